#!/usr/bin/python3
"""Checks OpenLineage events, one JSON object a line, against OpenLineage's published
schemas and the schemas of the facets they carry, with format checks on, offline.

    /usr/bin/python3 tests/openlineage/validate.py --spec DIR --facets DIR EVENTS.jsonl...

--spec holds OpenLineage.json (2-0-2) and facets/*.json, as in OpenLineage's repository
(tests/openlineage/README.md says which commit and where it lives); --facets holds the
project's own facet schemas (docs/facets). Every schema is found by its "$id"; a $ref to
anything else is an error, never a download.

Each line is checked against the spec (it must be one of its events), and each facet it
carries (run, job, input and output facets) against the schema its `_schemaURL` names,
which must be one of those loaded and declare the facet under the name it is used with.

Exit 0: every event valid. 1: an event is invalid (each problem is printed, naming the file,
line and place). 2: the check could not run (a module, a schema, a format checker missing).
Needs Debian's python3-jsonschema and python3-rfc3987 (uri formats): run with
/usr/bin/python3, not a python3 without Debian's modules.
"""
import argparse
import datetime
import json
import pathlib
import re
import sys

try:
    import jsonschema
except ImportError:
    sys.exit("validate.py: no jsonschema module: install python3-jsonschema and run with /usr/bin/python3")


def fail_setup(message):
    print(f"validate.py: {message}", file=sys.stderr)
    sys.exit(2)


def load_schemas(spec_dir, facets_dir):
    """{$id: schema} for OpenLineage.json, spec/facets/*.json and the project's facets."""
    paths = [spec_dir / "OpenLineage.json"]
    paths += sorted((spec_dir / "facets").glob("*.json"))
    paths += sorted(facets_dir.glob("*.json"))
    store = {}
    for path in paths:
        try:
            schema = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            fail_setup(f"cannot read the schema {path}: {e}")
        if "$id" not in schema:
            fail_setup(f"{path} has no $id")
        store[schema["$id"]] = schema
    if len(paths) < 3:
        fail_setup(f"no facet schemas under {spec_dir / 'facets'} or {facets_dir}")
    return store


# Debian 12's jsonschema checks date-time only with the rfc3339-validator module, which
# Debian does not package: without this check eventTime would pass unchecked. RFC 3339,
# section 5.6 (date-time), then a calendar check.
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def is_date_time(value):
    if not isinstance(value, str):
        return True
    m = RFC3339.match(value)
    if not m:
        return False
    offset = "+00:00" if m.group(4) in ("Z", "z") else m.group(4)
    datetime.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{offset}")  # ValueError: not a real time
    return True


def format_checker(store):
    checker = jsonschema.FormatChecker()
    if "date-time" not in checker.checkers:
        checker.checks("date-time", raises=ValueError)(is_date_time)
    used = set()

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("format"), str):
                used.add(node["format"])
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(list(store.values()))
    missing = sorted(used - set(checker.checkers))
    if missing:
        fail_setup(f"this jsonschema cannot check the formats {missing} (for uri: install python3-rfc3987)")
    return checker


def offline(uri):
    raise jsonschema.RefResolutionError(f"{uri} is not among the loaded schemas (no download is tried)")


def facets_of(event):
    """(place, name, facet) for every facet an event carries."""
    def each(place, facets):
        for name, facet in (facets or {}).items():
            yield f"{place}.{name}", name, facet

    yield from each("run.facets", event.get("run", {}).get("facets"))
    yield from each("job.facets", event.get("job", {}).get("facets"))
    for kind, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, ds in enumerate(event.get(kind) or []):
            yield from each(f"{kind}[{i}].facets", ds.get("facets"))
            yield from each(f"{kind}[{i}].{extra}", ds.get(extra))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, type=pathlib.Path)
    parser.add_argument("--facets", required=True, type=pathlib.Path)
    parser.add_argument("events", nargs="+", type=pathlib.Path)
    args = parser.parse_args()

    store = load_schemas(args.spec, args.facets)
    core_id = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
    if core_id not in store:
        fail_setup(f"{args.spec / 'OpenLineage.json'} is not the 2-0-2 spec (no schema with $id {core_id})")
    checker = format_checker(store)
    resolver = jsonschema.RefResolver(base_uri=core_id, referrer=store[core_id], store=store,
                                      handlers={"http": offline, "https": offline})
    Validator = jsonschema.Draft202012Validator

    def problems(schema, instance):
        v = Validator(schema, resolver=resolver, format_checker=checker)
        # "not valid under any of the given schemas" says little: name the likeliest cause.
        errors = [jsonschema.exceptions.best_match([e]) for e in v.iter_errors(instance)]
        return sorted(errors, key=lambda e: list(map(str, e.absolute_path)))

    bad = 0
    checked = 0
    for path in args.events:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                event = json.loads(line)
            except ValueError as e:
                print(f"{where}: not JSON: {e}")
                bad += 1
                continue
            # Checked as a RunEvent first, whose errors name the field; then as the spec's
            # root (one of RunEvent, DatasetEvent, JobEvent).
            errors = problems({"$ref": f"{core_id}#/$defs/RunEvent"}, event) or problems({"$ref": core_id}, event)
            found = [f"{where}: {'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}" for e in errors]
            for place, name, facet in facets_of(event):
                url = facet.get("_schemaURL", "") if isinstance(facet, dict) else ""
                base = url.partition("#")[0]
                if base not in store:
                    found.append(f"{where}: {place}: _schemaURL {url!r} names no loaded schema")
                    continue
                if name not in store[base].get("properties", {}):
                    found.append(f"{where}: {place}: {base} declares no facet named {name!r}")
                    continue
                for e in problems({"$ref": f"{base}#/properties/{name}"}, facet):
                    found.append(f"{where}: {place}/{'/'.join(map(str, e.absolute_path))}: {e.message}")
            checked += 1
            bad += len(found)
            for message in found:
                print(message)
    if checked == 0:
        print("validate.py: no events to check")
        return 1
    print(f"validate.py: {checked} events checked, {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
