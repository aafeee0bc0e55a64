# Installs a project's build requirements (build-system.requires and what the backend asks for)
# into the build's Python, natively: a toolchain build then builds without isolation, because an
# isolated one would pick the requirements' wheels for the target's platform
# (_PYTHON_HOST_PLATFORM), which cannot run here. Uses pypa's build. Argument: the project.
import subprocess, sys
import build

builder = build.ProjectBuilder(sys.argv[1])


def install(what, reqs):
    reqs = sorted(reqs)
    print("pookie-ns: %s: %s" % (what, " ".join(reqs) or "(none)"), flush=True)
    if reqs:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *reqs])


install("build-system.requires", builder.build_system_requires)
install("the backend's requirements for a wheel", builder.get_requires_for_build("wheel"))
