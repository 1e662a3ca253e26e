"""What step 2 of docs/native-request-path.md could gain at concurrency 1, bounded by measurement:
the proxy with a part of llmbill's Python taken out — not a correct proxy, a bound — in an
interleaved A/B (`ab_proxy.py`) against the same commit whole.

    .venv/bin/python bench/step2_bound.py [--remove guards,settle,flush] [--mode chat] [--rounds 10]
        [--seconds 4] [REV]

What each removal takes out (any of them, comma-separated, together):
- `guards`: after the first call of a (key, customer, model), admission is an `Admission` with a
  new id and nothing else — no upper bound, records, plan, limits, credits or tags, and its release
  frees nothing. What the guards' Python costs: the half of step 2 that needs their state in C++.
- `settle`: the spend-log row is neither journaled nor queued for the flush (the core's
  `settle_call` still prices, records, spools the call and makes the row's line). The settle
  half's Python. (Before the core made the row, this also took out building it in Python.)
- `flush`: the spend flush writes no spend-log rows (no encoding, no insert); its increments
  still go. What the rows cost behind the reply, mostly in the c=1 p99.

The removals are text edits of REV's python/llmbill (HEAD by default), committed in a temporary
detached worktree; each must match exactly once, or this stops before measuring (the code moved:
update the edit). The commit is left unreferenced; `git gc` drops it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# removal → [(file, text, replacement)]
EDITS: dict[str, list[tuple[str, str, str]]] = {
    "guards": [
        ("python/llmbill/proxy/budget_fallbacks.py",
         """    try:
        return model, d, await admit_model(state, principal, customer, upper_bound_cost(d, route.bound, body),
                                           model, body)""",
         """    memo = _BOUND_MEMO.get((principal.token_hash, customer, model))
    if memo is not None:  # step2_bound.py: the guards' Python taken out after the first call
        from .guards import Admission
        from .ids import new_id
        return model, d, Admission(state, memo.entities, memo.upper_bound, call_id=new_id(), at_cost=memo.at_cost)
    try:
        first = await admit_model(state, principal, customer, upper_bound_cost(d, route.bound, body), model, body)
        _BOUND_MEMO[(principal.token_hash, customer, model)] = first
        return model, d, first"""),
        ("python/llmbill/proxy/budget_fallbacks.py", "\nasync def admit(state",
         "\n_BOUND_MEMO: dict[Any, Any] = {}\n\n\nasync def admit(state"),
    ],
    "settle": [
        ("python/llmbill/proxy/settle.py",
         "    state.spend.note_settled(row, cost, user, team)  # the core's ledger has the call already\n", ""),
        ("python/llmbill/proxy/settle.py", "    if state.spend.journal is not None:\n",
         "    if False:  # step2_bound.py: no journal line\n"),
    ],
    "flush": [
        ("python/llmbill/proxy/store/sql.py", "            turns = LoopShare(",
         "            batch = SpendBatch(increments=batch.increments)  # step2_bound.py: no spend-log rows\n"
         "            turns = LoopShare("),
    ],
}


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def bound_commit(rev: str, removals: list[str], tree: Path) -> str:
    """REV with the removals applied, committed in `tree` (a detached worktree): its sha."""
    git("worktree", "add", "--detach", str(tree), rev)
    for name in removals:
        for path, text, replacement in EDITS[name]:
            file = tree / path
            source = file.read_text()
            found = source.count(text)
            if found != 1:
                raise SystemExit(f"step2_bound: the '{name}' edit matches {found} times in {path} at {rev}, "
                                 "not once: update EDITS to the code as it is now")
            file.write_text(source.replace(text, replacement))
    git("-c", "user.name=step2_bound", "-c", "user.email=bench@localhost", "commit", "-qam",
        f"step2_bound: {'+'.join(removals)} taken out (a bound, not a change)", cwd=tree)
    return git("rev-parse", "HEAD", cwd=tree)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", nargs="?", default="HEAD")
    ap.add_argument("--remove", default="guards", help=f"comma-separated, of {','.join(EDITS)}")
    ap.add_argument("--mode", default="chat")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    removals = [r for r in args.remove.split(",") if r]
    unknown = [r for r in removals if r not in EDITS]
    if unknown or not removals:
        ap.error(f"--remove takes {','.join(EDITS)}, not {args.remove!r}")
    rev = git("rev-parse", args.rev)
    with tempfile.TemporaryDirectory(prefix="llmbill-step2-bound-") as work:
        tree = Path(work) / "tree"
        try:
            bounded = bound_commit(rev, removals, tree)
        finally:
            if tree.exists():
                git("worktree", "remove", "--force", str(tree))
        print(f"A {rev[:7]} (whole) against B {bounded[:7]} ({'+'.join(removals)} taken out)", flush=True)
        return subprocess.run([sys.executable, str(ROOT / "bench" / "ab_proxy.py"), rev[:12], bounded[:12],
                               "--concurrency", "1", "--rounds", str(args.rounds), "--seconds", str(args.seconds),
                               "--mode", args.mode], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
