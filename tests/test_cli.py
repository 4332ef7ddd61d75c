"""The operator commands as an operator runs them: separate processes, JSON on stdout."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPTS = Path(__file__).parent / "fixtures" / "transcripts"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run_bots.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING"})


def test_understand_prints_the_contract_fields():
    done = run("understand", "Tôi là Nguyễn Văn An, 0912 345 678, ổ gà lớn trước số 12 Hùng Vương, phường Hải Châu")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert set(out) >= {"name", "phone", "email", "address", "commune", "field", "agency", "urgent",
                        "emergency_number", "out_of_scope", "abusive", "language"}
    assert out["name"] == "Nguyễn Văn An" and out["phone"] == "+84912345678"
    assert out["field"] == "transport" and out["agency"] == "so_xay_dung"
    assert out["commune"] == "Phường Hải Châu" and out["language"] == "vi"


def test_understand_flags_an_emergency():
    out = json.loads(run("understand", "có người bị tai nạn nằm bất tỉnh giữa đường").stdout)
    assert out["urgent"] is True and out["emergency_number"] == "115"


def test_replay_two_citizens_interleaved_on_two_channels():
    done = run("replay", str(TRANSCRIPTS / "two_citizens.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    reports = {r["channel"]: r for r in lines if r["type"] == "reflection"}
    assert set(reports) == {"zalo", "telegram"}
    hoa, binh = reports["zalo"], reports["telegram"]
    assert hoa["citizen"] == {"name": "Lê Thị Hoa", "phone": "+84935111222", "email": None}
    assert hoa["confidential"] is True and hoa["field"] == "environment" and hoa["photos"] == 1
    assert hoa["location"]["commune"] == "Phường Hải Châu"
    assert binh["citizen"]["phone"] == "+84905777888" and binh["field"] == "electricity"
    assert binh["location"]["lat"] == 16.0544 and binh["location"]["commune"]
    acks = [x for x in lines if x["type"] == "outbound" and x["text"].startswith("Đã tiếp nhận")]
    assert {a["to"] for a in acks} == {"z-100", "t-200"}


def test_policy_check_prints_the_next_working_week():
    done = run("policy", "check", "policies/dien_bien.yaml")
    assert done.returncode == 0, done.stderr
    assert "Điện Biên" in done.stdout


def test_policy_check_rejects_a_broken_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("province: X\n", encoding="utf-8")
    done = run("policy", "check", str(bad))
    assert done.returncode == 2 and "bad.yaml" in done.stdout + done.stderr
