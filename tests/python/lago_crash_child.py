"""A billing process to be killed: test_lago_crash.py runs it and sends it SIGKILL.

    python tests/python/lago_crash_child.py SPOOL_DIR API_BASE API_KEY N

Opens a Pipeline on SPOOL_DIR, submits N calls without waiting for Lago, prints each call as a
JSON line ({"call_id", "timestamp_ms", "end_user_id"}), then "ready", and sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import time

import llmbill


def main(spool_dir: str, api_base: str, api_key: str, n: int) -> None:
    pipeline = llmbill.Pipeline(spool_dir=spool_dir, event_codes=["llm_usage"], api_base=api_base,
                                api_key=api_key, fsync="never", flush_interval=0.01, backoff_base=0.05,
                                backoff_cap=0.2)
    for i in range(n):
        call = {"call_id": f"crash-{i}", "timestamp_ms": int(time.time() * 1000), "end_user_id": f"cust-{i % 7}"}
        usage = llmbill.Usage(prompt_tokens=100, completion_tokens=20)
        pipeline.submit(call_id=call["call_id"], timestamp_ms=call["timestamp_ms"], model="gpt-4o", usage=usage,
                        cost=llmbill.cost("gpt-4o", usage), end_user_id=call["end_user_id"])
        print(json.dumps(call))
    print("ready", flush=True)
    time.sleep(60)  # killed long before


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
