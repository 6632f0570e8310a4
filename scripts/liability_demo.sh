# Sourced by scripts/demo.sh once its job has trained a model (issue 15): attribution
# (of a prediction, then self-influence), withdrawal,
# taint, refusal, retraining without the withdrawn records, and the replacement served and
# traced. Uses demo.sh's cluster (`custody` from scripts/lib/cluster.sh, $cluster_key) and
# its principals: demo-user submitted the job, so it declared the data set and owns it;
# demo-client is a consumer.
#   liability_demo MODEL RUN_DIR PREDICTION   (PREDICTION: demo-client's first of `predict --rows 5`)
liability_demo() {
  local model=$1 run=$2 prediction=$3 rev job2
  local images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
  echo
  echo "== attribution of a prediction: which training records drove $prediction? demo-client gives"
  echo "   its input again (only its SHA-256 was recorded), and the workers score their shards"
  echo "   (custody attribute $prediction --input ... --rows 5 --top 3)"
  cluster_key="$run/demo-client.key"
  custody attribute "$prediction" --input "$images" --rows 5 --top 3 --purpose demo
  echo
  echo "== attribution: the training records that influence the model most on themselves (TracIn"
  echo "   self-influence: mislabelled or unusual records rank first; custody attribute --self-influence $model)"
  cluster_key="$run/demo-user.key"
  custody attribute --self-influence "$model" --top 5 --purpose demo
  echo
  echo "== withdrawal: demo-user, who declared the data set, withdraws 100 of its training records"
  printf '# data subjects who withdrew their consent (training record indices)\n0-99\n' >"$run/withdrawn.txt"
  cluster_key="$run/demo-user.key"
  rev=$(custody revoke fashion-mnist --records "$run/withdrawn.txt" --reason "consent withdrawn (demo ticket 1)")
  echo
  echo "the model is now tainted (custody lineage trace $model, the lines about it):"
  custody lineage trace "$model" | grep -E "TAINTED|reached through|permitted purposes"
  echo
  echo "demo-client asks it again: refused, naming the revocation (and no older version answers instead):"
  cluster_key="$run/demo-client.key"
  if custody predict "$model" --input "$images" --rows 1 --purpose demo; then
    echo "ERROR: a tainted model answered" >&2
    return 1
  fi
  echo
  echo "== retraining: demo-user retrains it without the withdrawn records (custody retrain $model --without $rev)"
  cluster_key="$run/demo-user.key"
  job2=$(custody retrain "$model" --without "$rev")
  custody wait "$job2"
  echo
  echo "demo-client is served by the replacement:"
  cluster_key="$run/demo-client.key"
  custody predict "$model" --input "$images" --rows 3 --purpose demo | cut -c1-60
  echo
  echo "its lineage (asked by demo-user: lineage is for submitters and auditors, not consumers):"
  echo "what it replaces, and the proof that no worker trained on a withdrawn record:"
  cluster_key="$run/demo-user.key"
  custody lineage trace "$model" | grep -E "^model|replaces|TAINTED|excluded|withdrawn record|permitted" || true
}
