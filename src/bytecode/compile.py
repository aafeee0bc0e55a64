# pookie-ns: compiles, natively, the files a foreign base OS's maintainer scripts asked to
# byte-compile (see src/bytecode/mod.rs). argv: ROOT OPTIMIZE; stdin: the chroot's paths, one a
# line. Each .pyc is written beside its source under ROOT, with the path inside the chroot as
# its file name, as py_compile run inside would have made it. Symbolic links are followed
# inside ROOT (sitecustomize.py points to /etc/python3.X/: the chroot's, not the host's).
import importlib.util
import os
import py_compile
import sys


def inside(root, path, hops=40):
    """ROOT + PATH with every symbolic link of PATH resolved within ROOT; None if it leads
    nowhere."""
    parts = [p for p in path.split("/") if p]
    here = ""
    for i, part in enumerate(parts):
        step = here + "/" + part
        if os.path.islink(root + step):
            if hops == 0:
                return None
            target = os.readlink(root + step)
            if not target.startswith("/"):
                target = here + "/" + target
            rest = "/".join(parts[i + 1:])
            return inside(root, os.path.normpath(target + "/" + rest), hops - 1)
        here = step
    return root + here


root, optimize = sys.argv[1], int(sys.argv[2])
failed = 0
for line in sys.stdin:
    name = line.rstrip("\n")
    source = inside(root, name) if name else None
    # Gone since it was asked for (a later package replaced it): nothing to compile.
    if source is None or not os.path.isfile(source):
        continue
    cfile = importlib.util.cache_from_source(
        root + name, optimization=optimize if optimize >= 1 else ""
    )
    try:
        py_compile.compile(
            source, cfile=cfile, dfile=name, doraise=True, optimize=optimize
        )
    except py_compile.PyCompileError as e:
        sys.stderr.write(e.msg + "\n")
        failed += 1
    except OSError as e:
        sys.stderr.write("%s: %s\n" % (name, e))
        failed += 1
sys.exit(1 if failed else 0)
