/* pookie-ns example: a tiny CPython extension whose results depend on real arithmetic, so that a
 * wheel built for the wrong architecture, or miscompiled, fails its tests. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A published wheel is a release build: the interpreter's flags (sysconfig's `-DNDEBUG -g -O2`)
 * or the backend's must reach the compiler. setup.py adds no -O of its own, so this fails when
 * a build loses them (issue 28: cp314 compiled without them, and zig then in its debug mode). */
#if !defined(NDEBUG) || !defined(__OPTIMIZE__)
#error "fastmath: compiled without the release flags (NDEBUG and optimisation): were the interpreter's CFLAGS replaced?"
#endif

/* gcd(a, b) of two non-negative 64-bit integers (Euclid). */
static PyObject *fm_gcd(PyObject *self, PyObject *args) {
    unsigned long long a, b;
    if (!PyArg_ParseTuple(args, "KK", &a, &b))
        return NULL;
    while (b != 0) {
        unsigned long long t = a % b;
        a = b;
        b = t;
    }
    return PyLong_FromUnsignedLongLong(a);
}

/* Number of set bits of a 64-bit integer. */
static PyObject *fm_popcount(PyObject *self, PyObject *args) {
    unsigned long long x;
    if (!PyArg_ParseTuple(args, "K", &x))
        return NULL;
    int n = 0;
    while (x) {
        x &= x - 1;
        n++;
    }
    return PyLong_FromLong(n);
}

/* Dot product of two equally long sequences of floats. */
static PyObject *fm_dot(PyObject *self, PyObject *args) {
    PyObject *a, *b;
    if (!PyArg_ParseTuple(args, "OO", &a, &b))
        return NULL;
    PyObject *fa = PySequence_Fast(a, "dot() needs sequences");
    if (!fa)
        return NULL;
    PyObject *fb = PySequence_Fast(b, "dot() needs sequences");
    if (!fb) {
        Py_DECREF(fa);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fa);
    if (n != PySequence_Fast_GET_SIZE(fb)) {
        Py_DECREF(fa);
        Py_DECREF(fb);
        PyErr_SetString(PyExc_ValueError, "dot() needs sequences of the same length");
        return NULL;
    }
    double sum = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fa, i));
        double y = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fb, i));
        if (PyErr_Occurred()) {
            Py_DECREF(fa);
            Py_DECREF(fb);
            return NULL;
        }
        sum += x * y;
    }
    Py_DECREF(fa);
    Py_DECREF(fb);
    return PyFloat_FromDouble(sum);
}

/* The machine the extension was compiled for, from the compiler's own macros. */
static PyObject *fm_machine(PyObject *self, PyObject *noargs) {
#if defined(__x86_64__)
    const char *m = "x86_64";
#elif defined(__aarch64__)
    const char *m = "aarch64";
#elif defined(__arm__)
    const char *m = "armv7l";
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
    const char *m = "ppc64le";
#elif defined(__s390x__)
    const char *m = "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
    const char *m = "riscv64";
#else
    const char *m = "unknown";
#endif
    return PyUnicode_FromString(m);
}

static PyMethodDef methods[] = {
    {"gcd", fm_gcd, METH_VARARGS, "gcd(a, b) -> greatest common divisor"},
    {"popcount", fm_popcount, METH_VARARGS, "popcount(x) -> number of set bits"},
    {"dot", fm_dot, METH_VARARGS, "dot(a, b) -> sum of a[i] * b[i]"},
    {"machine", fm_machine, METH_NOARGS, "machine() -> the arch this was compiled for"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastmath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastmath(void) { return PyModule_Create(&module); }
