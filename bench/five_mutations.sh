#!/usr/bin/env bash
# Issue 19's five mutations, each applied to a copy of the tree and run against the test named for
# it (plus the unmutated copy as the control, where all six tests pass). Not part of `make test`;
# about 2 minutes on 2 cores. Usage: bench/five_mutations.sh [python]  (default .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$PWD/.venv/bin/python}
COPY=$(mktemp -d /tmp/tunectl-five.XXXXXX)
trap 'rm -rf "$COPY"' EXIT
failed=0
run() {  # label file old new test...
  local label=$1 file=$2 old=$3 new=$4; shift 4
  rm -rf "$COPY/tree" && mkdir -p "$COPY/tree/studies"
  tar --exclude=.git --exclude=mutants --exclude=studies --exclude=__pycache__ --exclude=.venv -cf - . | tar -xf - -C "$COPY/tree"
  "$PY" - "$COPY/tree/$file" "$old" "$new" <<'PY' || { echo "$label: the line to mutate is gone"; failed=1; return; }
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
open(path, "w").write(text.replace(old, new))
PY
  local out rc
  out=$(cd "$COPY/tree" && PYTHONPATH="$COPY/tree" "$PY" -m pytest -q -p no:cacheprovider "$@" 2>&1); rc=$?
  echo "$label ($file: '$old' -> '$new'):"
  echo "$out" | grep -E "^FAILED|passed|failed" | sed 's/^/    /'
  if [ "$old" = "$new" ]; then [ $rc = 0 ] || failed=1; else [ $rc = 1 ] || failed=1; fi
}
run "split stratification" tunectl/data.py "for stratify in ([labels, None] if labels is not None else [None]):" \
  "for stratify in [None]:" tests/test_data.py::test_stratified_split_keeps_class_proportions
run "evaluated_before flag" tunectl/evaluate.py "evaluated_before = bool(looks)" "evaluated_before = False" \
  tests/test_evaluate.py::test_evaluate_records_every_look_and_warns_the_second_time
run "resume seed offset" tunectl/tune.py "+ 1000 * len(study.get_trials(deepcopy=False))" \
  "+ 0 * len(study.get_trials(deepcopy=False))" tests/test_tune.py::test_resume_adds_trials_to_the_same_study
run "default bias/variance limit 0.02 -> 0.05" tunectl/diagnose.py "CLASSIFICATION_THRESHOLD = 0.02" \
  "CLASSIFICATION_THRESHOLD = 0.05" tests/test_pins.py::test_default_limits_are_two_points_of_error_rate
run "Hyperband min_resource 1 -> 3" tunectl/tune.py "HyperbandPruner(min_resource=1," "HyperbandPruner(min_resource=3," \
  tests/test_pins.py::test_hyperband_from_one_epoch_to_the_spaces_epochs_reduction_3 \
  tests/test_pins.py::test_hyperband_prunes_a_hopeless_trial_after_its_first_epoch
run "control (unmutated)" tunectl/diagnose.py "CLASSIFICATION_THRESHOLD = 0.02" "CLASSIFICATION_THRESHOLD = 0.02" \
  tests/test_data.py::test_stratified_split_keeps_class_proportions \
  tests/test_evaluate.py::test_evaluate_records_every_look_and_warns_the_second_time \
  tests/test_tune.py::test_resume_adds_trials_to_the_same_study tests/test_pins.py::test_default_limits_are_two_points_of_error_rate \
  tests/test_pins.py::test_hyperband_from_one_epoch_to_the_spaces_epochs_reduction_3 \
  tests/test_pins.py::test_hyperband_prunes_a_hopeless_trial_after_its_first_epoch
[ $failed = 0 ] && echo "all five mutations caught; the control passes" || { echo "FAILED: a mutation survived or the control failed"; exit 1; }
