"""``secnic rules check``: the table, the summary for large files, exit codes and error format."""

from __future__ import annotations

from sim.cli.main import main

RULES = """\
# a small policy
pass tcp 10.0.0.0/8 any -> any 22 (msg:"ssh"; sid:1; rev:2;)
drop tcp any any -> $HOME_NET [1024:,!8080] (msg:"high ports"; flags:S,CE; sid:2;)
alert tcp any any -> any any (msg:"c"; content:"x"; sid:3;)
alert tcp any any -> any any (msg:"p"; pcre:"/x/"; sid:4;)
alert dns any any -> any any (msg:"d"; sid:5;)
"""


def test_table_per_rule_and_capacity(tmp_path, capsys):
    path = tmp_path / "p.rules"
    path.write_text(RULES)
    assert main(["rules", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 5 rules: 2 offloaded, 1 payload, 1 host path, 1 unsupported"
    assert [line.split() for line in out[1:7]] == [
        ["sid", "action", "verdict", "entries", "ternary", "reason"],
        ["1", "pass", "offloaded", "1", "1"], ["2", "drop", "offloaded", "6", "51"],
        ["3", "alert", "payload", "content"],
        ["4", "alert", "host", "path", "pcre"], ["5", "alert", "unsupported", "protocol", "dns"]]
    # sid 2: HOME_NET's 3 prefixes x ([1024:8079]: 1024/6 2048/5 4096/5 6144/6 7168/7 7680/8 7936/9
    # 8064/12 = 8 prefixes; [8081:65535]: 8081/16 8082/15 8084/14 8088/13 8096/11 8128/10 8192/3
    # 16384/2 32768/1 = 9 prefixes): 3 x 17 = 51, plus sid 1's one entry.
    assert out[-1] == ("capacity: 7 of 256 entries with range matching; 52 of 256 as ternary (TCAM) entries "
                       "after range expansion")


def test_capacity_option_sends_what_does_not_fit_to_the_host(tmp_path, capsys):
    path = tmp_path / "p.rules"
    path.write_text(RULES)
    assert main(["rules", "check", str(path), "--capacity", "4"]) == 0
    out = capsys.readouterr().out
    assert "does not fit: needs 6 entries, 3 of 4 left" in out
    assert out.splitlines()[-1] == ("capacity: 1 of 4 entries with range matching; 1 of 4 as ternary (TCAM) "
                                    "entries after range expansion")


def test_many_rules_give_a_summary_grouped_by_reason(tmp_path, capsys):
    path = tmp_path / "many.rules"
    path.write_text("".join(f'alert tcp any any -> any any (content:"{i}"; sid:{i};)\n' for i in range(1, 51))
                    + "alert tcp any any -> 10.0.0.1 any (sid:99;)\n")
    assert main(["rules", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: 51 rules: 1 offloaded, 50 payload, 0 host path, 0 unsupported"
    assert out[3].split() == ["50", "payload", "content", "1,", "2,", "3,", "4,", "5,", "6,", "7,", "8,", "..."]
    # The payload rules' matcher summary (docs/matcher.md): one line per status and reason.
    assert out[4] == "payload matcher: 50 rules: 0 offloaded, 0 prefilter, 50 host only; 0 of 1024 literals"
    assert out[5].split()[:3] == ["50", "host", "only"]
    assert len(out) == 7
    assert main(["rules", "check", str(path), "--all"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2 + 51 + 1 + 51


def test_syntax_error_exits_2_with_file_line_column(tmp_path, capsys):
    path = tmp_path / "bad.rules"
    path.write_text("alert tcp any any -> any any (sid:1;)\n\nalert tcp any any -> any any (flags:Q; sid:2;)\n")
    assert main(["rules", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{path}:3:37: unknown TCP flag 'Q' (expected F S R P A U C E 0 and ! + *)\n"


def test_vars_file_and_its_errors(tmp_path, capsys):
    rules = tmp_path / "p.rules"
    rules.write_text("alert tcp any any -> $HOME_NET 80 (sid:1;)\n")
    good = tmp_path / "vars.toml"
    good.write_text('[address-groups]\nHOME_NET = "[192.0.2.0/24,198.51.100.0/24]"\n')
    assert main(["rules", "check", str(rules), "--vars", str(good)]) == 0
    assert "capacity: 2 of 256 entries" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[address-groups]\nHOME_NET = "x" y\n')
    assert main(["rules", "check", str(rules), "--vars", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}:2:16: TOML syntax error")
    undefined = tmp_path / "undef.toml"
    undefined.write_text('[address-groups]\nHOME_NET = "$NOWHERE"\n')
    assert main(["rules", "check", str(rules), "--vars", str(undefined)]) == 2
    assert capsys.readouterr().err.startswith(
        f"{rules}:1:22: destination address: in variable $HOME_NET = '$NOWHERE': undefined variable $NOWHERE")


def test_missing_file_and_bad_capacity_exit_2(tmp_path, capsys):
    assert main(["rules", "check", str(tmp_path / "none.rules")]) == 2
    assert "no such rule file" in capsys.readouterr().err
    (tmp_path / "p.rules").write_text(RULES)
    assert main(["rules", "check", str(tmp_path / "p.rules"), "--capacity", "-1"]) == 2
    assert "--capacity must be at least 0" in capsys.readouterr().err


def test_host_driver_rules_does_not_import_sim():
    import subprocess
    import sys
    code = ("import sys, host_driver.rules; bad = sorted(m for m in sys.modules if m == 'sim' or "
            "m.startswith('sim.')); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
