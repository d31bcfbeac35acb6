#!/usr/bin/env bash
# Runs the exact-resume tests and bench/kill_resume.py under each pytorch-lightning version given (issue 17):
# resume leans on Lightning's loop internals, so the range in pyproject.toml must be one this passes on.
#
#   scripts/check_lightning_versions.sh [--checkout DIR] VERSION...
#   e.g. scripts/check_lightning_versions.sh --checkout /tmp/plcheck 2.4.0 2.5.6 2.6.6
#
# Test a committed state, not a tree others are editing: git worktree add /tmp/plcheck HEAD.
# Prints one line per version; full output goes to /tmp/pl-check-VERSION-{pytest,kill_resume}.log.
set -uo pipefail
checkout="$(cd "$(dirname "$0")/.." && pwd)"
if [ "${1:-}" = "--checkout" ]; then checkout="$(cd "$2" && pwd)"; shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [--checkout DIR] VERSION..." >&2; exit 2; }
# One thread per torch process: the machines have 2 cores, and the kill/resume timings assume no contention.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
tests="resum or ctrl_c or kill_9 or last_checkpoint or time_limit"

for version in "$@"; do
    venv="/tmp/venv-pl-$version" log="/tmp/pl-check-$version"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    pip=("$venv/bin/python" -m pip install --quiet)
    # torch pinned first: 2.13.0 is the CPU build on disk; any other version downloads gigabytes.
    # The project is reinstalled every time so the venv runs this checkout, even if it last ran another one;
    # with the extras the tests import when they are collected (serve, ray), as scripts/setup.sh installs them.
    if ! { "${pip[@]}" "setuptools>=68" "torch==2.13.0" "pytorch-lightning==$version" >"$log-install.log" 2>&1 &&
           "${pip[@]}" -e "$checkout[test,serve,ray]" >>"$log-install.log" 2>&1; }; then
        echo "pytorch-lightning $version: install failed (see $log-install.log)"; continue
    fi
    installed="$("$venv/bin/python" -c 'import pytorch_lightning as pl; print(pl.__version__)' 2>/dev/null)"
    note=""
    if [ "$installed" != "$version" ]; then
        # The checkout's range excludes this version and pip moved it; put it back to test it anyway.
        "${pip[@]}" --no-deps "pytorch-lightning==$version" >>"$log-install.log" 2>&1
        note=" (outside the checkout's range)"
    fi

    (cd "$checkout" && "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfE -k "$tests" tests/) >"$log-pytest.log" 2>&1
    summary="$(tail -n 1 "$log-pytest.log")"
    count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 || true; }
    passed="$(count passed)" failed="$(count failed)" errors="$(count error)"
    # The commonest error line: an assertion on a subprocess's output often comes first and hides the cause.
    cause="$(grep -oE '^E +[A-Za-z.]*(Error|Exception): .*' "$log-pytest.log" | sed -E 's/^E +//' | cut -c1-120 |
             sort | uniq -c | sort -rn | head -n 1 | sed -E 's/^ *[0-9]+ //')"

    # Exit 1 means either "the runs differ" or a crash (SystemExit with a message): its comparison lines tell.
    if (cd "$checkout" && "$venv/bin/python" bench/kill_resume.py) >"$log-kill_resume.log" 2>&1; then
        kill_resume="identical"
    elif grep -q "^figures identical" "$log-kill_resume.log"; then
        kill_resume="DIFFERS: $(grep -E ': NO$' "$log-kill_resume.log" | tr '\n' ' ')"
    else
        kill_resume="CRASHED: $(grep -v '^\s*$' "$log-kill_resume.log" | tail -n 1 | cut -c1-120)"
    fi
    seed="$(grep -oE 'kill seed [0-9]+' "$log-kill_resume.log")"
    echo "pytorch-lightning $version$note: ${passed:-0} passed, ${failed:-0} failed, ${errors:-0} errors${cause:+ (mostly: $cause)};" \
         "kill_resume: $kill_resume${seed:+ ($seed)}"
done
