"""Refreshes the bundled price table from the newest `litellm` wheel on PyPI.

    python scripts/refresh_prices.py            # downloads litellm (no deps), copies the table
    python scripts/refresh_prices.py --check    # loads the new table through llmbill first

Writes python/llmbill/data/model_prices.json and its model_prices.SOURCE (version and date).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "litellm/model_prices_and_context_window_backup.json"
DATA = Path(__file__).resolve().parents[1] / "python" / "llmbill" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="load the table through llmbill before replacing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "litellm"], check=True)
        wheel = next(Path(tmp).glob("litellm-*.whl"))
        version = wheel.name.split("-")[1]
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src:
            new = Path(tmp) / "model_prices.json"
            with new.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        if args.check:
            import llmbill

            table = llmbill.PriceTable.load([new])
            print(f"loaded {len(table)} models")
        shutil.copy(new, DATA / "model_prices.json")
    (DATA / "model_prices.SOURCE").write_text(
        f"source:   litellm {version} wheel from PyPI, file {MEMBER}\n"
        f"fetched:  {datetime.date.today().isoformat()}\n"
        "refresh:  python scripts/refresh_prices.py\n")
    print(f"price table updated from litellm {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
