/* Optional C accelerator for the hot path of the RFC 6455 core and of the server's handshake.
 *
 * What it does, each matched by a pure-Python function of identical results (selected when
 * this module is not built, or when STARGATE_PURE_PYTHON=1; see stargate.masking):
 *
 *   apply_mask(data, mask)                  the section 5.3 XOR          (masking.py)
 *   read_messages(buf, pos, events, ...)    whole single-frame messages  (frames.py)
 *   build_frame(first, payload, key)        one frame, header + payload  (frames.py)
 *   build_header(first, length, key)        a frame header alone         (frames.py)
 *   MessageBuffer                           a message being reassembled  (frames.py)
 *   split_upgrade_head(data, size, fields)  the common upgrade head      (server/fasthead.py)
 *
 * Anything unusual (a control frame, a fragment, an extension bit, an invalid header, text
 * that is not UTF-8) is left to the Python code, which owns every protocol decision and
 * every error message: the C side only ever does the common case faster.  (The upgrade head
 * the C side splits is read by the server's reader otherwise, which answers every refusal.)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* Below this size the XOR takes a few microseconds at most: releasing and re-taking the GIL
   would cost more (about 60 ns per call, a quarter of a small frame's unmasking) and, with
   the WSGI worker threads busy, could leave the event loop waiting for the GIL. */
#define RELEASE_GIL_MIN (64 * 1024)

/* Text frames up to this size are unmasked on the stack before decoding. */
#define STACK_TEXT 512

/* stargate.events.TextMessage and BinaryMessage, imported when the module is, and the
   member (slot) that holds their one field, ``data``. */
static PyObject *TextMessage = NULL;
static PyObject *BinaryMessage = NULL;
static PyMemberDef *text_data = NULL;
static PyMemberDef *binary_data = NULL;

/* An event of a slotted dataclass with the one field ``data``: what calling the class does
   (its generated __init__ only stores the field), without running that __init__ as Python
   code, a third of the cost of a small message.  Falls back to the call when the class is
   not what new_event_type() checked it to be at import.  Steals no reference. */
static PyObject *
new_event(PyObject *cls, PyMemberDef *member, PyObject *data)
{
    if (member == NULL) {
        return PyObject_CallOneArg(cls, data);
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *event = type->tp_alloc(type, 0);
    if (event == NULL) {
        return NULL;
    }
    if (PyMember_SetOne((char *)event, member, data) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

/* The member of cls's slot ``data`` when cls is a plain slotted class whose instances may be
   made as new_event() does: object's __new__, one object slot, and an __init__ that is
   dataclasses' (checked by the tests: events made either way compare equal).  NULL: call
   the class instead. */
static PyMemberDef *
event_member(PyObject *cls)
{
    if (!PyType_Check(cls)) {
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_itemsize != 0) {
        return NULL;
    }
    PyObject *post_init = PyObject_GetAttrString(cls, "__post_init__");
    if (post_init != NULL) {
        Py_DECREF(post_init);
        return NULL; /* an __init__ that does more than store the field */
    }
    PyErr_Clear();
    PyObject *descr = PyDict_GetItemString(type->tp_dict, "data"); /* borrowed */
    if (descr == NULL || !PyObject_TypeCheck(descr, &PyMemberDescr_Type)) {
        return NULL;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        return NULL;
    }
    return member;
}

/* out[i] = in[i] ^ m[i & 3]; in and out may be the same memory. */
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

/* Copy n bytes, unmasking them when key is not NULL; without the GIL for large copies.
   Callers only pass memory that no other thread can resize: buffers they hold an export
   of, or objects not yet visible to Python code. */
static void
copy_unmasked(const unsigned char *in, unsigned char *out, Py_ssize_t n, const unsigned char *key)
{
    if (n >= RELEASE_GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        if (key != NULL) {
            xor_mask(in, out, n, key);
        }
        else {
            memcpy(out, in, n);
        }
        Py_END_ALLOW_THREADS
    }
    else if (key != NULL) {
        xor_mask(in, out, n, key);
    }
    else if (n > 0) {
        memcpy(out, in, n);
    }
}

/* A masking key argument: None (no masking) or exactly 4 bytes, copied into key[4]. */
static int
get_key(PyObject *obj, unsigned char key[4], int *masked)
{
    if (obj == Py_None) {
        *masked = 0;
        return 0;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view.len != 4) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        return -1;
    }
    memcpy(key, view.buf, 4);
    PyBuffer_Release(&view);
    *masked = 1;
    return 0;
}

/* ---- apply_mask ------------------------------------------------------------------------ */

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
    if (result != NULL) {
        copy_unmasked((const unsigned char *)data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                      data.len, (const unsigned char *)mask.buf);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&mask);
    return result;
}

/* ---- read_messages --------------------------------------------------------------------- */

static int
as_size(PyObject *obj, Py_ssize_t *out, const char *what)
{
    Py_ssize_t value = PyNumber_AsSsize_t(obj, NULL); /* clamps on overflow */
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be negative", what);
        return -1;
    }
    *out = value;
    return 0;
}

/* One whole single-frame text message: decode (after unmasking) into a TextMessage.
   Returns NULL with no exception set when the payload is not UTF-8. */
static PyObject *
text_event(const unsigned char *payload, Py_ssize_t n, const unsigned char *key)
{
    unsigned char stack[STACK_TEXT];
    unsigned char *scratch = NULL;
    const char *src = (const char *)payload;
    if (key != NULL) {
        scratch = n <= STACK_TEXT ? stack : PyMem_Malloc(n);
        if (scratch == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        copy_unmasked(payload, scratch, n, key);
        src = (const char *)scratch;
    }
    PyObject *text = PyUnicode_DecodeUTF8(src, n, NULL);
    if (scratch != stack) {
        PyMem_Free(scratch);
    }
    if (text == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear(); /* the Python path reports it (close code 1007) */
        }
        return NULL;
    }
    PyObject *event = new_event(TextMessage, text_data, text);
    Py_DECREF(text);
    return event;
}

PyDoc_STRVAR(read_messages_doc,
"read_messages(buf, pos, events, expect_mask, max_length) -> int\n\n"
"Append a TextMessage or BinaryMessage to events for each whole single-frame message\n"
"(FIN, no RSV bit, opcode 1 or 2, masked iff expect_mask, payload of at most max_length\n"
"bytes, text valid UTF-8) from buf[pos] on; stop at the first frame that is anything\n"
"else or incomplete, and return its position.");

static PyObject *
read_messages(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "read_messages takes 5 arguments");
        return NULL;
    }
    PyObject *events = args[2];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    Py_ssize_t pos, max_length;
    if (as_size(args[1], &pos, "pos") < 0 || as_size(args[4], &max_length, "max_length") < 0) {
        return NULL;
    }
    int expect_mask = PyObject_IsTrue(args[3]);
    if (expect_mask < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)view.buf;
    const Py_ssize_t end = view.len;
    const unsigned char mask_bit = expect_mask ? 0x80 : 0;
    if (pos > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos beyond the end of buf");
        return NULL;
    }
    while (end - pos >= 2) {
        const unsigned char first = b[pos], second = b[pos + 1];
        if ((first != 0x81 && first != 0x82) || (second & 0x80) != mask_bit) {
            break;
        }
        uint64_t length = second & 0x7F;
        Py_ssize_t start = pos + 2;
        if (length == 126) {
            if (end - start < 2) {
                break;
            }
            length = ((uint64_t)b[start] << 8) | b[start + 1];
            start += 2;
        }
        else if (length == 127) {
            if (end - start < 8) {
                break;
            }
            length = 0;
            for (int i = 0; i < 8; i++) {
                length = (length << 8) | b[start + i];
            }
            start += 8;
        }
        if (length > (uint64_t)max_length) {
            break;
        }
        const unsigned char *key = NULL;
        if (mask_bit) {
            if (end - start < 4) {
                break;
            }
            key = b + start;
            start += 4;
        }
        const Py_ssize_t n = (Py_ssize_t)length;
        if (end - start < n) {
            break;
        }
        PyObject *event;
        if (first == 0x82) {
            PyObject *payload = PyBytes_FromStringAndSize(NULL, n);
            if (payload == NULL) {
                goto error;
            }
            copy_unmasked(b + start, (unsigned char *)PyBytes_AS_STRING(payload), n, key);
            event = new_event(BinaryMessage, binary_data, payload);
            Py_DECREF(payload);
        }
        else {
            event = text_event(b + start, n, key);
            if (event == NULL && !PyErr_Occurred()) {
                break; /* not UTF-8: left to the Python path */
            }
        }
        if (event == NULL) {
            goto error;
        }
        int failed = PyList_Append(events, event);
        Py_DECREF(event);
        if (failed) {
            goto error;
        }
        pos = start + n;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);
error:
    PyBuffer_Release(&view);
    return NULL;
}

/* ---- build_frame, build_header --------------------------------------------------------- */

/* Write the header (section 5.2: minimal length encoding) into out; returns its size. */
static Py_ssize_t
write_header(unsigned char *out, unsigned char first, Py_ssize_t n, const unsigned char *key)
{
    const unsigned char mask_bit = key != NULL ? 0x80 : 0;
    Py_ssize_t size;
    out[0] = first;
    if (n < 126) {
        out[1] = mask_bit | (unsigned char)n;
        size = 2;
    }
    else if (n < 65536) {
        out[1] = mask_bit | 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
        size = 4;
    }
    else {
        uint64_t length = (uint64_t)n;
        out[1] = mask_bit | 127;
        for (int i = 0; i < 8; i++) {
            out[2 + i] = (unsigned char)(length >> (56 - 8 * i));
        }
        size = 10;
    }
    if (key != NULL) {
        memcpy(out + size, key, 4);
        size += 4;
    }
    return size;
}

static int
get_first(PyObject *obj, unsigned char *first)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > 255) {
        PyErr_SetString(PyExc_ValueError, "first byte must be 0-255");
        return -1;
    }
    *first = (unsigned char)value;
    return 0;
}

PyDoc_STRVAR(build_frame_doc,
"build_frame(first, payload, key) -> bytes\n\n"
"One frame: byte 0 is first, the payload (bytes-like, or str sent as UTF-8) follows the\n"
"minimal length encoding and, when key (4 bytes) is not None, the key, masked with it.");

static PyObject *
build_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build_frame takes 3 arguments");
        return NULL;
    }
    unsigned char first, key[4];
    int masked;
    if (get_first(args[0], &first) < 0 || get_key(args[2], key, &masked) < 0) {
        return NULL;
    }
    PyObject *payload = args[1];
    PyObject *encoded = NULL; /* the UTF-8 of a non-ASCII str */
    Py_buffer view = {0};
    const unsigned char *data;
    Py_ssize_t n;
    if (PyUnicode_Check(payload)) {
        if (PyUnicode_IS_ASCII(payload)) {
            /* ASCII is its own UTF-8: copied straight from the str, no intermediate. */
            data = (const unsigned char *)PyUnicode_DATA(payload);
            n = PyUnicode_GET_LENGTH(payload);
        }
        else {
            encoded = PyUnicode_AsUTF8String(payload);
            if (encoded == NULL) {
                return NULL;
            }
            data = (const unsigned char *)PyBytes_AS_STRING(encoded);
            n = PyBytes_GET_SIZE(encoded);
        }
    }
    else {
        if (PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        data = (const unsigned char *)view.buf;
        n = view.len;
    }
    unsigned char header[14];
    Py_ssize_t header_size = write_header(header, first, n, masked ? key : NULL);
    PyObject *frame = PyBytes_FromStringAndSize(NULL, header_size + n);
    if (frame != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
        memcpy(out, header, header_size);
        copy_unmasked(data, out + header_size, n, masked ? key : NULL);
    }
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    Py_XDECREF(encoded);
    return frame;
}

PyDoc_STRVAR(build_header_doc,
"build_header(first, length, key) -> bytes\n\n"
"The header of a frame of length payload bytes (with the key when it is not None).");

static PyObject *
build_header(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build_header takes 3 arguments");
        return NULL;
    }
    unsigned char first, key[4];
    int masked;
    Py_ssize_t n;
    if (get_first(args[0], &first) < 0 || as_size(args[1], &n, "length") < 0
        || get_key(args[2], key, &masked) < 0) {
        return NULL;
    }
    unsigned char header[14];
    Py_ssize_t size = write_header(header, first, n, masked ? key : NULL);
    return PyBytes_FromStringAndSize((const char *)header, size);
}

/* ---- MessageBuffer ----------------------------------------------------------------------
 * The payload of a message arriving in pieces (a frame spread over many reads, or many
 * fragments), unmasked straight into the bytes object that take() hands out: one copy in
 * all, however many pieces.  The bytes object is private until take() returns it, so
 * writing into it and resizing it is safe (as CPython's own readers do). */

typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes of capacity PyBytes_GET_SIZE(data), or NULL */
    Py_ssize_t size;
} MessageBuffer;

/* The first allocation; later ones double, up to the size the caller expects. */
#define MESSAGE_BUFFER_MIN 4096

static void
MessageBuffer_dealloc(MessageBuffer *self)
{
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
MessageBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "MessageBuffer() takes no arguments");
        return NULL;
    }
    MessageBuffer *self = (MessageBuffer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->data = NULL;
        self->size = 0;
    }
    return (PyObject *)self;
}

/* Make room for need bytes in all, growing to twice that, up to limit (the size the message
   cannot exceed).  The capacity never exceeds max(MESSAGE_BUFFER_MIN, 2 * the bytes actually
   added), so a peer cannot make us allocate ahead of what it sent: a header alone allocates
   nothing.  Twice the need, not twice the capacity: a large message arriving in reads of a
   few hundred kilobytes is then resized (and maybe copied) once or twice, not at each read.
   Not more: four times (a 1 MiB message at its final size from its first 256 KiB read, never
   copied) made glibc give the heap back and fault it in again, 66-133 page faults per
   message against none, which cost more than the copy. */
static int
MessageBuffer_reserve(MessageBuffer *self, Py_ssize_t need, Py_ssize_t limit)
{
    Py_ssize_t capacity = self->data != NULL ? PyBytes_GET_SIZE(self->data) : 0;
    if (need <= capacity) {
        return 0;
    }
    Py_ssize_t grow = need < PY_SSIZE_T_MAX / 2 ? need * 2 : PY_SSIZE_T_MAX;
    if (grow < MESSAGE_BUFFER_MIN) {
        grow = MESSAGE_BUFFER_MIN;
    }
    if (grow > limit) {
        grow = limit;
    }
    if (grow < need) {
        grow = need;
    }
    if (self->data == NULL) {
        self->data = PyBytes_FromStringAndSize(NULL, grow);
        return self->data == NULL ? -1 : 0;
    }
    /* realloc: in place, or by remapping pages for large blocks, rather than copying. */
    return _PyBytes_Resize(&self->data, grow);
}

PyDoc_STRVAR(MessageBuffer_add_doc,
"add(source, start, stop, key, offset, limit) -> None\n\n"
"Append source[start:stop], unmasked with key (4 bytes, or None) as if its first byte were\n"
"byte offset of a masked payload; limit: the size the message cannot exceed.");

static PyObject *
MessageBuffer_add(MessageBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "add takes 6 arguments");
        return NULL;
    }
    Py_ssize_t start, stop, offset, limit;
    unsigned char key[4];
    int masked;
    if (as_size(args[1], &start, "start") < 0 || as_size(args[2], &stop, "stop") < 0
        || get_key(args[3], key, &masked) < 0 || as_size(args[4], &offset, "offset") < 0
        || as_size(args[5], &limit, "limit") < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (stop > view.len || start > stop) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "start and stop must lie within source, in order");
        return NULL;
    }
    Py_ssize_t n = stop - start;
    if (n > 0) {
        if (n > PY_SSIZE_T_MAX - self->size) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        if (MessageBuffer_reserve(self, self->size + n, limit) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        unsigned char rotated[4];
        for (int i = 0; i < 4; i++) {
            rotated[i] = key[(offset + i) & 3];
        }
        copy_unmasked((const unsigned char *)view.buf + start,
                      (unsigned char *)PyBytes_AS_STRING(self->data) + self->size, n,
                      masked ? rotated : NULL);
        self->size += n;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(MessageBuffer_take_doc,
"take() -> bytes\n\nEverything added so far, as bytes; the buffer is empty again.");

static PyObject *
MessageBuffer_take(MessageBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *data = self->data;
    Py_ssize_t size = self->size;
    self->data = NULL;
    self->size = 0;
    if (data == NULL || size == 0) {
        Py_XDECREF(data);
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (PyBytes_GET_SIZE(data) != size && _PyBytes_Resize(&data, size) < 0) {
        return NULL;
    }
    return data;
}

static Py_ssize_t
MessageBuffer_len(MessageBuffer *self)
{
    return self->size;
}

static PyMethodDef MessageBuffer_methods[] = {
    {"add", (PyCFunction)(void (*)(void))MessageBuffer_add, METH_FASTCALL, MessageBuffer_add_doc},
    {"take", (PyCFunction)MessageBuffer_take, METH_NOARGS, MessageBuffer_take_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods MessageBuffer_as_sequence = {
    .sq_length = (lenfunc)MessageBuffer_len,
};

static PyTypeObject MessageBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stargate._speedups.MessageBuffer",
    .tp_basicsize = sizeof(MessageBuffer),
    .tp_dealloc = (destructor)MessageBuffer_dealloc,
    .tp_as_sequence = &MessageBuffer_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The payload of a message received in pieces, unmasked into its final bytes.",
    .tp_methods = MessageBuffer_methods,
    .tp_new = MessageBuffer_new,
};

/* ---- the module ------------------------------------------------------------------------ */

/* ---- split_upgrade_head ---------------------------------------------------------------- */

/* RFC 9110 section 5.6.2 tchar: the bytes of a field name. */
static unsigned char is_tchar[256];

/* ASCII lower case of c. */
static inline unsigned char
lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Whether data[0:n] is name (lower case ASCII), ignoring ASCII case. */
static int
name_is(const unsigned char *data, Py_ssize_t n, const char *name)
{
    Py_ssize_t len = (Py_ssize_t)strlen(name);
    if (n != len) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (lower(data[i]) != (unsigned char)name[i]) {
            return 0;
        }
    }
    return 1;
}

/* Narrow [*start, *stop) of data to what lies between its OWS (SP and HTAB, RFC 9110
   section 5.6.3): around a field value (RFC 9112 section 5) and a list element. */
static void
trim_ows(const unsigned char *data, Py_ssize_t *start, Py_ssize_t *stop)
{
    while (*start < *stop && (data[*start] == ' ' || data[*start] == '\t')) {
        (*start)++;
    }
    while (*stop > *start && (data[*stop - 1] == ' ' || data[*stop - 1] == '\t')) {
        (*stop)--;
    }
}

/* Whether the comma-separated list value[0:n] has the element token (lower case), OWS
   around elements ignored, ASCII case ignored: stargate.headers.has_token for one value. */
static int
list_has(const unsigned char *value, Py_ssize_t n, const char *token)
{
    Py_ssize_t start = 0;
    while (start <= n) {
        Py_ssize_t stop = start;
        while (stop < n && value[stop] != ',') {
            stop++;
        }
        Py_ssize_t a = start, b = stop;
        trim_ows(value, &a, &b);
        if (name_is(value + a, b - a, token)) {
            return 1;
        }
        start = stop + 1;
    }
    return 0;
}

/* A str of ASCII bytes (the head's grammar here admits nothing else). */
static PyObject *
ascii_str(const unsigned char *data, Py_ssize_t n)
{
    PyObject *text = PyUnicode_New(n, 127);
    if (text != NULL) {
        memcpy(PyUnicode_DATA(text), data, n);
    }
    return text;
}

/* Where the first CRLF CRLF of data[0:limit] starts (whole within it), or -1. */
static Py_ssize_t
head_end(const unsigned char *data, Py_ssize_t limit)
{
    if (limit < 4) {
        return -1;
    }
    const unsigned char *p = data, *stop = data + limit - 3;
    while (p < stop) {
        p = memchr(p, '\r', stop - p);
        if (p == NULL) {
            return -1;
        }
        if (p[1] == '\n' && p[2] == '\r' && p[3] == '\n') {
            return p - data;
        }
        p++;
    }
    return -1;
}

/* The fields a request needs the reader for (stargate.server.fasthead._READER_FIELDS). */
static const char *const reader_fields[] = {
    "content-length", "transfer-encoding", "expect", "proxy-connection", "content-type", NULL,
};

/* The work of split_upgrade_head on data[0:size]: a new tuple, Py_None (a new reference)
   when the head is not the common form, or NULL with an exception set. */
static PyObject *
split_head(const unsigned char *data, Py_ssize_t size, Py_ssize_t max_size,
           Py_ssize_t max_fields)
{
    Py_ssize_t end = head_end(data, size < max_size ? size : max_size);
    if (end < 0) {
        Py_RETURN_NONE;
    }
    /* Every CRLF before the head's end ends a line (a value holds no CR). */
    Py_ssize_t crlfs = 0;
    for (const unsigned char *p = data; (p = memchr(p, '\r', end - (p - data))) != NULL; p++) {
        crlfs += p[1] == '\n';
    }
    if (crlfs > max_fields) {
        Py_RETURN_NONE;
    }
    /* GET SP origin-form SP HTTP/1.1 CRLF, the target visible ASCII. */
    if (end < 14 || memcmp(data, "GET /", 5) != 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = 5;
    while (pos < end && data[pos] >= '!' && data[pos] <= '~') {
        pos++;
    }
    Py_ssize_t target_end = pos;
    if (end - pos < 9 || memcmp(data + pos, " HTTP/1.1", 9) != 0) {
        Py_RETURN_NONE;
    }
    pos += 9;
    if (data[pos] != '\r' || data[pos + 1] != '\n') {
        Py_RETURN_NONE;
    }
    pos += 2; /* the field lines start here; the last ends at end + 2 */
    const unsigned char *host = NULL;
    Py_ssize_t host_len = 0;
    int upgrade = 0, connection_upgrade = 0, connection_close = 0;
    PyObject *fields = PyList_New(0);
    if (fields == NULL) {
        return NULL;
    }
    while (pos < end + 2) {
        Py_ssize_t name_start = pos;
        while (is_tchar[data[pos]]) {
            pos++;
        }
        Py_ssize_t name_len = pos - name_start;
        if (name_len == 0 || data[pos] != ':') {
            goto not_common;
        }
        pos++;
        Py_ssize_t value_start = pos;
        while (data[pos] == '\t' || (data[pos] >= ' ' && data[pos] <= '~')) {
            pos++;
        }
        if (data[pos] != '\r' || data[pos + 1] != '\n') {
            goto not_common;
        }
        Py_ssize_t value_end = pos;
        pos += 2;
        trim_ows(data, &value_start, &value_end);
        const unsigned char *name = data + name_start, *value = data + value_start;
        Py_ssize_t value_len = value_end - value_start;
        if (name_is(name, name_len, "host")) {
            if (host != NULL) {
                goto not_common; /* the reader refuses two Host fields */
            }
            host = value;
            host_len = value_len;
        }
        else if (name_is(name, name_len, "upgrade")) {
            upgrade = upgrade || list_has(value, value_len, "websocket");
        }
        else if (name_is(name, name_len, "connection")) {
            connection_upgrade = connection_upgrade || list_has(value, value_len, "upgrade");
            connection_close = connection_close || list_has(value, value_len, "close");
        }
        else {
            for (const char *const *reader = reader_fields; *reader != NULL; reader++) {
                if (name_is(name, name_len, *reader)) {
                    goto not_common;
                }
            }
        }
        PyObject *field = Py_BuildValue("(NN)", ascii_str(name, name_len),
                                        ascii_str(value, value_len));
        if (field == NULL || PyList_Append(fields, field) < 0) {
            Py_XDECREF(field);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(field);
    }
    if (host == NULL || host_len == 0 || !upgrade || !connection_upgrade) {
        goto not_common;
    }
    return Py_BuildValue("(NNNOn)", ascii_str(data + 4, target_end - 4), fields,
                         ascii_str(host, host_len), connection_close ? Py_True : Py_False,
                         end + 4);
not_common:
    Py_DECREF(fields);
    Py_RETURN_NONE;
}

static PyObject *
split_upgrade_head(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "split_upgrade_head() takes 3 arguments");
        return NULL;
    }
    Py_ssize_t max_size, max_fields;
    if (as_size(args[1], &max_size, "max_header_size") < 0
        || as_size(args[2], &max_fields, "max_headers") < 0) {
        return NULL;
    }
    /* bytes only: the scans rely on the CRLF CRLF found first, and the strings are made
       from bytes checked earlier, while the allocations in between may run Python code
       (a collection, a finalizer) that could rewrite a writable buffer. */
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "split_upgrade_head() needs bytes, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    return split_head((const unsigned char *)PyBytes_AS_STRING(args[0]),
                      PyBytes_GET_SIZE(args[0]), max_size, max_fields);
}

PyDoc_STRVAR(split_upgrade_head_doc,
"split_upgrade_head(data, max_header_size, max_headers) -> tuple | None\n\n"
"The common WebSocket upgrade head at the start of data, split: (target, fields, host,\n"
"connection_close, head_end), or None for anything else (stargate.server.fasthead).");

static PyMethodDef speedups_methods[] = {
    {"apply_mask", apply_mask, METH_VARARGS,
     "apply_mask(data, mask) -> bytes: XOR data with the repeated 4-byte mask."},
    {"read_messages", (PyCFunction)(void (*)(void))read_messages, METH_FASTCALL,
     read_messages_doc},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL, build_frame_doc},
    {"build_header", (PyCFunction)(void (*)(void))build_header, METH_FASTCALL,
     build_header_doc},
    {"split_upgrade_head", (PyCFunction)(void (*)(void))split_upgrade_head, METH_FASTCALL,
     split_upgrade_head_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "stargate._speedups", NULL, -1, speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&MessageBufferType) < 0) {
        return NULL;
    }
    for (const char *c = "!#$%&'*+-.^_`|~0123456789"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"; *c; c++) {
        is_tchar[(unsigned char)*c] = 1;
    }
    PyObject *events = PyImport_ImportModule("stargate.events");
    if (events == NULL) {
        return NULL;
    }
    Py_XSETREF(TextMessage, PyObject_GetAttrString(events, "TextMessage"));
    Py_XSETREF(BinaryMessage, PyObject_GetAttrString(events, "BinaryMessage"));
    Py_DECREF(events);
    if (TextMessage == NULL || BinaryMessage == NULL) {
        return NULL;
    }
    text_data = event_member(TextMessage);
    binary_data = event_member(BinaryMessage);
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    /* Whether events are made without calling their class (see new_event); for the tests. */
    if (PyModule_AddObjectRef(module, "DIRECT_EVENTS",
                              text_data != NULL && binary_data != NULL ? Py_True : Py_False) < 0
        || PyModule_AddObjectRef(module, "MessageBuffer", (PyObject *)&MessageBufferType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
