// A C++17 extension with the plain CPython API: std::vector, std::nth_element, std::set and
// exceptions translated into Python errors.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<double> to_doubles(PyObject *seq) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of numbers");
    if (!fast) throw std::runtime_error("");
    std::vector<double> out;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    out.reserve(static_cast<size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            throw std::runtime_error("");
        }
        out.push_back(v);
    }
    Py_DECREF(fast);
    return out;
}

struct Stats {
    size_t n = 0;
    double mean = 0.0, m2 = 0.0;
    void add(double x) {  // Welford's online algorithm
        ++n;
        double d = x - mean;
        mean += d / static_cast<double>(n);
        m2 += d * (x - mean);
    }
};

PyObject *describe(PyObject *, PyObject *arg) {
    try {
        auto xs = to_doubles(arg);
        if (xs.empty()) {
            PyErr_SetString(PyExc_ValueError, "describe() of an empty sequence");
            return nullptr;
        }
        Stats s;
        for (double x : xs) s.add(x);
        double var = s.n > 1 ? s.m2 / static_cast<double>(s.n - 1) : 0.0;
        auto [lo, hi] = std::minmax_element(xs.begin(), xs.end());
        return Py_BuildValue("{s:n,s:d,s:d,s:d,s:d}", "n", static_cast<Py_ssize_t>(s.n), "mean",
                             s.mean, "variance", var, "min", *lo, "max", *hi);
    } catch (const std::exception &) {
        return nullptr;
    }
}

PyObject *median(PyObject *, PyObject *arg) {
    try {
        auto xs = to_doubles(arg);
        if (xs.empty()) {
            PyErr_SetString(PyExc_ValueError, "median() of an empty sequence");
            return nullptr;
        }
        size_t mid = xs.size() / 2;
        std::nth_element(xs.begin(), xs.begin() + static_cast<long>(mid), xs.end());
        double m = xs[mid];
        if (xs.size() % 2 == 0) {
            double below = *std::max_element(xs.begin(), xs.begin() + static_cast<long>(mid));
            m = (m + below) / 2.0;
        }
        return PyFloat_FromDouble(m);
    } catch (const std::exception &) {
        return nullptr;
    }
}

PyObject *sorted_unique(PyObject *, PyObject *arg) {
    try {
        auto xs = to_doubles(arg);
        std::set<double> uniq(xs.begin(), xs.end());
        PyObject *list = PyList_New(static_cast<Py_ssize_t>(uniq.size()));
        if (!list) return nullptr;
        Py_ssize_t i = 0;
        for (double v : uniq) PyList_SET_ITEM(list, i++, PyFloat_FromDouble(v));
        return list;
    } catch (const std::exception &) {
        return nullptr;
    }
}

// Which compiler and C++ standard built this module, and for which machine.
PyObject *compiler(PyObject *, PyObject *) {
    std::string who;
#if defined(__clang__)
    who = "clang " __clang_version__;
#elif defined(__GNUC__)
    who = "gcc " __VERSION__;
#else
    who = "unknown";
#endif
    return Py_BuildValue("{s:s,s:l}", "compiler", who.c_str(), "cplusplus", __cplusplus);
}

PyMethodDef methods[] = {
    {"describe", describe, METH_O, "n, mean, sample variance, min and max of a sequence."},
    {"median", median, METH_O, "The median of a sequence (mean of the middle two when even)."},
    {"sorted_unique", sorted_unique, METH_O, "The distinct values, ascending."},
    {"compiler", compiler, METH_NOARGS, "The compiler and __cplusplus this module was built with."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cppstats", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__cppstats(void) { return PyModule_Create(&module); }
