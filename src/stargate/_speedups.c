/* Optional C accelerator for the RFC 6455 masking XOR (section 5.3).
 *
 * Masking touches every payload byte of every client frame; in pure Python it costs about
 * 100x more than here.  stargate.masking falls back to a pure-Python version when this
 * module is not built, so behaviour never depends on it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Below this size the XOR takes a few microseconds at most: releasing and re-taking the GIL
   would cost more (about 60 ns per call, a quarter of a small frame's unmasking) and, with
   the WSGI worker threads busy, could leave the event loop waiting for the GIL. */
#define RELEASE_GIL_MIN (64 * 1024)

static void
xor_mask(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *m)
{
    Py_ssize_t i = 0;
    /* Eight bytes at a time: the 4-byte key repeated twice, XORed as one word; the
       compiler vectorises this loop further. */
    uint64_t key64;
    unsigned char key8[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
    memcpy(&key64, key8, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, in + i, 8);
        word ^= key64;
        memcpy(out + i, &word, 8);
    }
    for (; i < n; i++) {
        out[i] = in[i] ^ m[i & 3];
    }
}

static PyObject *
apply_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, mask;
    if (!PyArg_ParseTuple(args, "y*y*:apply_mask", &data, &mask)) {
        return NULL;
    }
    if (mask.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        return NULL;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&mask);
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)data.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *m = (const unsigned char *)mask.buf;
    Py_ssize_t n = data.len;

    if (n >= RELEASE_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        xor_mask(in, out, n, m);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(in, out, n, m);
    }

    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes: XOR data with the repeated 4-byte mask."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "stargate._speedups", NULL, -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
