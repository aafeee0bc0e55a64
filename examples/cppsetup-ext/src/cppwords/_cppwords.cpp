// pookie-ns example: a C++ extension that setuptools builds from a .cpp source with `language`
// unset. It needs the C++ standard library's headers to compile (<algorithm>, <map>, <string>,
// <vector>) and its runtime to link and load (std::string, operator new, exceptions), so a
// toolchain that compiles .cpp as C or links without the C++ runtime fails here.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

// A release build, as a published wheel must be (see examples/c-ext).
#if !defined(NDEBUG) || !defined(__OPTIMIZE__)
#error "cppwords: compiled without the release flags (NDEBUG and optimisation)"
#endif

static std::vector<std::string> split(const std::string &text) {
    std::vector<std::string> words;
    std::string word;
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c))) {
            if (!word.empty()) words.push_back(word);
            word.clear();
        } else {
            word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
    }
    if (!word.empty()) words.push_back(word);
    return words;
}

// count(text) -> {word: occurrences}
static PyObject *cw_count(PyObject *, PyObject *args) {
    const char *text;
    if (!PyArg_ParseTuple(args, "s", &text)) return nullptr;
    std::map<std::string, long> counts;
    for (const auto &w : split(text)) ++counts[w];
    PyObject *d = PyDict_New();
    if (!d) return nullptr;
    for (const auto &kv : counts) {
        PyObject *v = PyLong_FromLong(kv.second);
        if (!v || PyDict_SetItemString(d, kv.first.c_str(), v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return nullptr;
        }
        Py_DECREF(v);
    }
    return d;
}

// sorted_unique(text) -> the distinct words, sorted
static PyObject *cw_sorted_unique(PyObject *, PyObject *args) {
    const char *text;
    if (!PyArg_ParseTuple(args, "s", &text)) return nullptr;
    std::vector<std::string> words = split(text);
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    PyObject *list = PyList_New(static_cast<Py_ssize_t>(words.size()));
    if (!list) return nullptr;
    for (size_t i = 0; i < words.size(); i++) {
        PyObject *s = PyUnicode_FromStringAndSize(words[i].data(), words[i].size());
        if (!s) {
            Py_DECREF(list);
            return nullptr;
        }
        PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), s);
    }
    return list;
}

// nth_word(text, n) -> the n-th word; IndexError from a C++ exception (std::out_of_range)
static PyObject *cw_nth_word(PyObject *, PyObject *args) {
    const char *text;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "sn", &text, &n)) return nullptr;
    try {
        std::vector<std::string> words = split(text);
        if (n < 0) throw std::out_of_range("negative index");
        const std::string &w = words.at(static_cast<size_t>(n));
        return PyUnicode_FromStringAndSize(w.data(), w.size());
    } catch (const std::out_of_range &e) {
        PyErr_Format(PyExc_IndexError, "no word %zd (%s)", n, e.what());
        return nullptr;
    }
}

static PyMethodDef methods[] = {
    {"count", cw_count, METH_VARARGS, "Occurrences of each (lower-cased) word."},
    {"sorted_unique", cw_sorted_unique, METH_VARARGS, "The distinct words, sorted."},
    {"nth_word", cw_nth_word, METH_VARARGS, "The n-th word; IndexError past the end."},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cppwords", "Word counting in C++.", -1, methods,
    nullptr, nullptr, nullptr, nullptr,
};

PyMODINIT_FUNC PyInit__cppwords(void) { return PyModule_Create(&module); }
