import sys
from pathlib import Path

# The chart's renderer (tests/chart/render.py) is shared with the chart tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))
