"""What the slow test scripts share; imported, not a test itself (tests/CMakeLists.txt skips
files named _*.py). ctest runs each script as `script.py path/to/neuroseg
path/to/neuroseg_bench_ops`; a script counts failed checks and goes on, then ends with
`sys.exit(finish())`."""
import subprocess
import sys

NEUROSEG = sys.argv[1]
BENCH_OPS = sys.argv[2] if len(sys.argv) > 2 else None
failures = []


def check(ok, what):
    """Prints the check as ok or FAIL and records a failure; returns `ok`."""
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def neuroseg(args, env=None, must_succeed=False):
    """Runs the CLI with the list `args`, its output captured as text. With `must_succeed`, a
    non-zero exit raises with the command and its stderr (a setup step, not a check)."""
    p = subprocess.run([NEUROSEG] + [str(a) for a in args], capture_output=True, text=True, env=env)
    if must_succeed and p.returncode != 0:
        raise RuntimeError(f"neuroseg {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def finish():
    """The exit status: 1 after listing the failed checks, 0 when every check passed."""
    if failures:
        print(f"{len(failures)} check(s) failed:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0
