/* pookie-ns example: a CPython extension that links libffi (an external shared library) and
 * calls C functions through it, so that a wheel without a working libffi fails its tests. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <ffi.h>
#include <stdint.h>
#include <string.h>

static int64_t muladd(int64_t a, int64_t b, int64_t c) { return a * b + c; }

/* call_muladd(a, b, c) == a * b + c, computed by a call through ffi_call. */
static PyObject *fc_call_muladd(PyObject *self, PyObject *args) {
    long long a, b, c;
    if (!PyArg_ParseTuple(args, "LLL", &a, &b, &c))
        return NULL;
    ffi_cif cif;
    ffi_type *types[3] = {&ffi_type_sint64, &ffi_type_sint64, &ffi_type_sint64};
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 3, &ffi_type_sint64, types) != FFI_OK) {
        PyErr_SetString(PyExc_RuntimeError, "ffi_prep_cif failed");
        return NULL;
    }
    int64_t x = a, y = b, z = c, result = 0;
    void *values[3] = {&x, &y, &z};
    ffi_call(&cif, FFI_FN(muladd), &result, values);
    return PyLong_FromLongLong(result);
}

/* call_strlen(s) == len(s.encode()), through ffi_call of libc's strlen. */
static PyObject *fc_call_strlen(PyObject *self, PyObject *args) {
    const char *s;
    if (!PyArg_ParseTuple(args, "s", &s))
        return NULL;
    ffi_cif cif;
    ffi_type *types[1] = {&ffi_type_pointer};
    /* size_t is 32 bits on armv7l: the return type follows it. */
    ffi_type *size_type = sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, size_type, types) != FFI_OK) {
        PyErr_SetString(PyExc_RuntimeError, "ffi_prep_cif failed");
        return NULL;
    }
    ffi_arg n = 0; /* return values narrower than a register are widened to ffi_arg */
    void *values[1] = {&s};
    ffi_call(&cif, FFI_FN(strlen), &n, values);
    return PyLong_FromUnsignedLongLong((unsigned long long)n);
}

static PyMethodDef methods[] = {
    {"call_muladd", fc_call_muladd, METH_VARARGS, "a * b + c through ffi_call"},
    {"call_strlen", fc_call_strlen, METH_VARARGS, "strlen(s) through ffi_call"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fficall", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fficall(void) { return PyModule_Create(&module); }
