/* zcheck._zcheck: a few zlib calls, through the buffer protocol. Built by Meson; zlib found
 * with pkg-config (the target's, in a cross build). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <zlib.h>

/* crc32(data, start=0) -> int */
static PyObject *zc_crc32(PyObject *self, PyObject *args) {
    Py_buffer buf;
    unsigned long start = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|k", &buf, &start))
        return NULL;
    uLong crc = (uLong)start;
    const Bytef *p = buf.buf;
    Py_ssize_t left = buf.len;
    while (left > 0) {
        uInt n = left > (Py_ssize_t)UINT_MAX ? UINT_MAX : (uInt)left;
        crc = crc32(crc, p, n);
        p += n;
        left -= n;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(crc & 0xffffffffUL);
}

/* adler32(data) -> int */
static PyObject *zc_adler32(PyObject *self, PyObject *args) {
    Py_buffer buf;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &buf))
        return NULL;
    uLong a = adler32(0L, Z_NULL, 0);
    const Bytef *p = buf.buf;
    Py_ssize_t left = buf.len;
    while (left > 0) {
        uInt n = left > (Py_ssize_t)UINT_MAX ? UINT_MAX : (uInt)left;
        a = adler32(a, p, n);
        p += n;
        left -= n;
    }
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(a & 0xffffffffUL);
}

/* deflate_ratio(data, level=6) -> float: compressed size / original size */
static PyObject *zc_deflate_ratio(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int level = 6;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|i", &buf, &level))
        return NULL;
    if (level < 0 || level > 9) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "level must be between 0 and 9");
        return NULL;
    }
    if (buf.len == 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "empty input");
        return NULL;
    }
    uLongf bound = compressBound((uLong)buf.len);
    Bytef *out = PyMem_Malloc(bound);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    uLongf size = bound;
    int rc = compress2(out, &size, buf.buf, (uLong)buf.len, level);
    double ratio = (double)size / (double)buf.len;
    PyMem_Free(out);
    PyBuffer_Release(&buf);
    if (rc != Z_OK) {
        PyErr_Format(PyExc_RuntimeError, "zlib compress2 failed: %d", rc);
        return NULL;
    }
    return PyFloat_FromDouble(ratio);
}

/* zlib_version() -> str: the version of the zlib linked at run time */
static PyObject *zc_zlib_version(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(zlibVersion());
}

static PyMethodDef methods[] = {
    {"crc32", zc_crc32, METH_VARARGS, "CRC-32 of a bytes-like object."},
    {"adler32", zc_adler32, METH_VARARGS, "Adler-32 of a bytes-like object."},
    {"deflate_ratio", zc_deflate_ratio, METH_VARARGS, "Compressed size over original size."},
    {"zlib_version", zc_zlib_version, METH_NOARGS, "The zlib version in use."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_zcheck", "zlib through Meson.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__zcheck(void) { return PyModule_Create(&module); }
