#!/usr/bin/env python3
"""Independent check of the values tests/core/dp_accountant_test.cc marks [MP].

Not the accountant's algorithm: A_alpha = E_{z~N(0,s^2)}[((1-q) + q exp((2z-1)/(2s^2)))^alpha]
is integrated numerically (mpmath, Debian's python3-mpmath), integer orders also summed exactly,
and epsilon uses the conversion of Canonne, Kamath, Steinke 2020 (Prop. 12).
Run: python3 tests/core/dp_accountant_check.py   (about 15 s)
"""
import mpmath as mp

mp.mp.dps = 40


def log_a(q, s, a):
    if a == int(a):
        a = int(a)
        return mp.log(mp.fsum(mp.binomial(a, k) * (1 - q) ** (a - k) * q**k *
                              mp.exp(mp.mpf(k * k - k) / (2 * s * s)) for k in range(a + 1)))
    f = lambda z: mp.npdf(z, 0, s) * ((1 - q) + q * mp.exp((2 * z - 1) / (2 * s * s))) ** a
    return mp.log(mp.quad(f, [-mp.inf, -10 * s, 0, 0.5, 1, 10 * s, mp.inf]))


def rdp(q, s, a):
    return log_a(q, s, a) / (a - 1)


print("q=0.01 sigma=2.5, 50 steps (dp_accounting test_compute_rdp_poisson_sampled_gaussian):")
for order in [1.5, 2.5, 5, 50, 100]:
    print(f"  order {order}: {mp.nstr(50 * rdp(mp.mpf('0.01'), mp.mpf('2.5'), order), 12)}")

opacus_orders = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
q, s, steps, delta = mp.mpf("0.04"), mp.mpf("1.5"), 2250, mp.mpf("1e-5")
best = min((steps * rdp(q, s, a) + mp.log1p(-mp.mpf(1) / a) - mp.log(delta * a) / (a - 1), a)
           for a in opacus_orders)
print(f"Opacus test_rdp_accountant (expects 7.32911117143): epsilon {mp.nstr(best[0], 13)} at order {best[1]}")
