"""``aiosagemaker demo`` (``make demo``): the main job on a local stack of its own, at a size
``make test`` affords (``make test-scale`` runs it as the README writes it, 5,000 inputs)."""

from __future__ import annotations

from pathlib import Path

from app_helpers import cli, read_records


def test_demo_checks_every_result_came_back_exactly_once(tmp_path: Path) -> None:
    ran = cli("demo", "-n", "100", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = " ".join(ran.stdout.split())  # rich wraps its lines at the console's width
    assert "100 records in OUTPUT for 100 inputs" in out
    assert "server accepted 100 inference ids, each exactly once" in out
    # One input in a thousand (at least one) is over the inline limit and goes through S3.
    assert "1 payloads staged to S3 (1 over the inline limit)" in out
    assert "every result came back exactly once" in out and "stack stopped" in out
    records = read_records(tmp_path / ".demo" / "results.jsonl")
    assert [r["n"] for r in records] == list(range(1, 101))
    assert {r["status"] for r in records} == {"completed"}
    assert len({r["inference_id"] for r in records}) == 100
