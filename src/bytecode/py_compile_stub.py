# pookie-ns: byte-compilation deferred (see src/bytecode/mod.rs in pookie-ns). While a foreign
# base OS is built, this file stands in for the stdlib's py_compile, which is diverted aside: the
# maintainer scripts' requests (`python3.X py_compile.py FILES`, py3compile's `python3.X -m
# py_compile -`) are recorded, and compiled after the build by an interpreter of the same
# version that runs natively. The real py_compile.py is put back before the tree is packed.
import sys

names = [a for a in sys.argv[1:] if a != "-q"]
if names == ["-"]:
    names = [line.rstrip("\n") for line in sys.stdin]
listing = "/var/lib/pookie-ns-bytecode/%d.%d%s.list" % (
    sys.version_info[0],
    sys.version_info[1],
    "-O" if sys.flags.optimize else "",
)
with open(listing, "a") as f:
    for name in names:
        f.write(name + "\n")
