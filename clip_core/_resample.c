/* PIL's 8-bit convolution resize (Resample.c's integer arithmetic), for the window of the output that a caller keeps.
 *
 * Pillow resizes an 8-bit image in two separable passes. Every output pixel of a pass is
 *     clip8((2**21 + sum over taps of input * weight) >> 22)
 * with integer weights (doubles scaled by 2**22 and rounded) over a run of input pixels along the pass' axis, and the
 * first pass is rounded to 8 bits before the second reads it. This module does the same integer arithmetic, so the
 * same pixels, but only for the output rows and columns asked for, with the weights computed by the caller
 * (clip_core.image_processing, which checks this module against the installed Pillow before using it), and with
 * vector instructions: four RGB channels' sums at once along a row, and whole rows at once along a column. It reads a
 * PIL image's pixels in place (through the Arrow C data interface) or a numpy array's, and releases the GIL while it
 * runs. Built as an optional extension: without it triclip calls PIL itself, with equal results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define HAVE_X86_VECTORS 1
#if defined(__linux__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef CLONES
#define CLONES
#endif

#define PRECISION_BITS 22
#define ROUNDING (1 << (PRECISION_BITS - 1))

static int have_sse41 = 0;

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PRECISION_BITS; /* an arithmetic shift, as in Resample.c */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Along columns: out[i][e] for e < width, from input rows first[i] - offset + t, weights k[i][t]. */
CLONES static void pass_rows(const uint8_t *src, Py_ssize_t src_stride, Py_ssize_t width, uint8_t *dst,
                             Py_ssize_t n_out, const int32_t *first, const int32_t *count, const int32_t *k,
                             Py_ssize_t taps, Py_ssize_t offset, int32_t *acc) {
    for (Py_ssize_t i = 0; i < n_out; i++) {
        const int32_t *ki = k + i * taps;
        for (Py_ssize_t e = 0; e < width; e++) acc[e] = ROUNDING;
        for (Py_ssize_t t = 0; t < count[i]; t++) {
            const uint8_t *row = src + (first[i] - offset + t) * src_stride;
            const int32_t w = ki[t];
            for (Py_ssize_t e = 0; e < width; e++) acc[e] += (int32_t)row[e] * w;
        }
        uint8_t *out = dst + i * width;
        for (Py_ssize_t e = 0; e < width; e++) out[e] = clip8(acc[e]);
    }
}

#ifdef HAVE_X86_VECTORS
/* One RGB output pixel with 4-byte loads: the fourth byte (padding, or the next pixel's red) fills a lane that is
 * dropped. */
__attribute__((target("sse4.1"))) static void rgb_pixel_sse41(const uint8_t *p, Py_ssize_t step, const int32_t *k,
                                                               Py_ssize_t n, uint8_t *out) {
    __m128i acc = _mm_set1_epi32(ROUNDING);
    for (Py_ssize_t t = 0; t < n; t++) {
        int32_t four;
        memcpy(&four, p + step * t, 4);
        __m128i pixel = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(four));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(pixel, _mm_set1_epi32(k[t])));
    }
    int32_t sums[4];
    _mm_storeu_si128((__m128i *)sums, acc);
    out[0] = clip8(sums[0]);
    out[1] = clip8(sums[1]);
    out[2] = clip8(sums[2]);
}
#endif

/* Along rows: out[r][j * channels + c] for r < rows, from input pixels first[j] - offset + t (each ``step`` bytes
 * apart, the channels first in each), weights k[j][t]. */
static void pass_cols(const uint8_t *src, Py_ssize_t src_stride, Py_ssize_t rows, Py_ssize_t step, int channels,
                      uint8_t *dst, Py_ssize_t n_out, const int32_t *first, const int32_t *count, const int32_t *k,
                      Py_ssize_t taps, Py_ssize_t offset) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        const uint8_t *row = src + r * src_stride;
        uint8_t *out = dst + r * n_out * channels;
        for (Py_ssize_t j = 0; j < n_out; j++) {
            const int32_t *kj = k + j * taps;
            const Py_ssize_t start = first[j] - offset, n = count[j];
            const uint8_t *p = row + start * step;
#ifdef HAVE_X86_VECTORS
            /* with 3-byte pixels the load of the last tap reads one byte past it: fine unless that ends the buffer */
            if (channels == 3 && have_sse41 && (step == 4 || (step == 3 && (r + 1 < rows ||
                                                                             (start + n) * 3 < src_stride)))) {
                rgb_pixel_sse41(p, step, kj, n, out + 3 * j);
                continue;
            }
#endif
            for (int c = 0; c < channels; c++) {
                int32_t acc = ROUNDING;
                for (Py_ssize_t t = 0; t < n; t++) acc += (int32_t)p[t * step + c] * kj[t];
                out[j * channels + c] = clip8(acc);
            }
        }
    }
}

/* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html), as Pillow exports images:
 * "C" (uint8, one per pixel) for "L", a fixed-size list of four uint8 ("+w:4") for "RGB" (R, G, B, padding). */
struct ArrowSchema {
    const char *format, *name, *metadata;
    int64_t flags, n_children;
    struct ArrowSchema **children, *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length, null_count, offset, n_buffers, n_children;
    const void **buffers;
    struct ArrowArray **children, *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};

/* The pixels of a (schema capsule, array capsule) pair: their address, count and bytes per pixel. */
static int arrow_pixels(PyObject *pair, const uint8_t **data, Py_ssize_t *count, Py_ssize_t *step) {
    PyObject *schema_capsule, *array_capsule;
    if (!PyArg_ParseTuple(pair, "OO", &schema_capsule, &array_capsule)) return -1;
    struct ArrowSchema *schema = PyCapsule_GetPointer(schema_capsule, "arrow_schema");
    struct ArrowArray *array = PyCapsule_GetPointer(array_capsule, "arrow_array");
    if (schema == NULL || array == NULL) return -1;
    if (array->release == NULL || array->null_count > 0) goto unsupported;
    if (strcmp(schema->format, "C") == 0 && array->n_buffers == 2 && array->buffers[1] != NULL) {
        *data = (const uint8_t *)array->buffers[1] + array->offset;
        *step = 1;
    } else if (strcmp(schema->format, "+w:4") == 0 && schema->n_children == 1 &&
               strcmp(schema->children[0]->format, "C") == 0 && array->n_children == 1 &&
               array->children[0]->n_buffers == 2 && array->children[0]->buffers[1] != NULL &&
               array->children[0]->null_count <= 0) {
        const struct ArrowArray *values = array->children[0];
        *data = (const uint8_t *)values->buffers[1] + values->offset + 4 * array->offset;
        *step = 4;
    } else {
        goto unsupported;
    }
    *count = (Py_ssize_t)array->length;
    return 0;
unsupported:
    PyErr_Format(PyExc_ValueError, "unsupported Arrow pixels (format %s): expected uint8 or 4 x uint8 per pixel",
                 schema->format);
    return -1;
}

/* The input span [lo, hi) that a plan reads, after checking that it stays within [0, size). */
static int plan_span(Py_buffer *first, Py_buffer *count, Py_buffer *weights, Py_ssize_t n_out, Py_ssize_t taps,
                     Py_ssize_t size, const char *axis, Py_ssize_t *lo, Py_ssize_t *hi) {
    if (first->len != n_out * 4 || count->len != n_out * 4 || weights->len != n_out * taps * 4) {
        PyErr_Format(PyExc_ValueError, "%s plan: expected %zd int32 starts and counts and %zd x %zd weights", axis,
                     n_out, n_out, taps);
        return -1;
    }
    const int32_t *f = first->buf, *c = count->buf;
    *lo = size;
    *hi = 0;
    for (Py_ssize_t i = 0; i < n_out; i++) {
        if (f[i] < 0 || c[i] < 1 || c[i] > taps || (Py_ssize_t)f[i] + c[i] > size) {
            PyErr_Format(PyExc_ValueError, "%s plan: output %zd reads inputs [%d, %d) of %zd", axis, i, f[i],
                         f[i] + c[i], size);
            return -1;
        }
        if (f[i] < *lo) *lo = f[i];
        if (f[i] + c[i] > *hi) *hi = f[i] + c[i];
    }
    return 0;
}

PyDoc_STRVAR(resize_doc,
"resize(src, height, width, channels, dst, out_rows, out_cols, col_first, col_count, col_weights, col_taps,\n"
"       row_first, row_count, row_weights, row_taps, vertical_first)\n\n"
"Write out_rows x out_cols x channels uint8 pixels of PIL's resize into dst: output column j reads input columns\n"
"col_first[j] + [0, col_count[j]) with int32 weights col_weights[j]; rows likewise. The horizontal pass runs\n"
"first unless vertical_first. src is a C-contiguous uint8 buffer (height, width, channels), or the pair of\n"
"capsules of a PIL image's __arrow_c_array__() (read in place).");

static PyObject *resize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *source;
    Py_buffer src = {0}, dst, cf, cc, cw, rf, rc, rw;
    Py_ssize_t height, width, out_rows, out_cols, col_taps, row_taps;
    int channels, vertical_first;
    if (!PyArg_ParseTuple(args, "Onniw*nny*y*y*ny*y*y*np", &source, &height, &width, &channels, &dst, &out_rows,
                          &out_cols, &cf, &cc, &cw, &col_taps, &rf, &rc, &rw, &row_taps, &vertical_first))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t c0, c1, r0, r1, count, step;
    const uint8_t *in;
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    if (channels != 1 && channels != 3) {
        PyErr_Format(PyExc_ValueError, "channels must be 1 or 3, got %d", channels);
        goto done;
    }
    if (PyTuple_Check(source)) {
        if (arrow_pixels(source, &in, &count, &step) < 0) goto done;
        if ((step == 1) != (channels == 1)) {
            PyErr_Format(PyExc_ValueError, "Arrow pixels of %zd bytes for %d channels", step, channels);
            goto done;
        }
    } else {
        if (PyObject_GetBuffer(source, &src, PyBUF_C_CONTIGUOUS) < 0) goto done;
        in = src.buf;
        step = channels;
        count = src.len % channels ? -1 : src.len / channels;
    }
    if (height < 1 || width < 1 || out_rows < 1 || out_cols < 1 || count != height * width ||
        dst.len != out_rows * out_cols * channels) {
        PyErr_Format(PyExc_ValueError, "%zd source pixels and a %zd-byte output, expected %zd x %zd pixels and "
                     "%zd x %zd x %d bytes", count, dst.len, height, width, out_rows, out_cols, channels);
        goto done;
    }
    if (plan_span(&cf, &cc, &cw, out_cols, col_taps, width, "column", &c0, &c1) < 0 ||
        plan_span(&rf, &rc, &rw, out_rows, row_taps, height, "row", &r0, &r1) < 0)
        goto done;
    /* the intermediate: the rows the vertical pass reads (horizontal first) or the columns the horizontal reads,
     * in the source's pixel layout when vertical first */
    Py_ssize_t tmp_bytes = vertical_first ? out_rows * (c1 - c0) * step : (r1 - r0) * out_cols * channels;
    Py_ssize_t acc_count = vertical_first ? (c1 - c0) * step : out_cols * channels;
    tmp = PyMem_RawMalloc(tmp_bytes + 1);
    acc = PyMem_RawMalloc(sizeof(int32_t) * acc_count);
    if (tmp == NULL || acc == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t stride = width * step;
    Py_BEGIN_ALLOW_THREADS
    if (vertical_first) {
        pass_rows(in + c0 * step, stride, (c1 - c0) * step, tmp, out_rows, rf.buf, rc.buf, rw.buf, row_taps, 0, acc);
        pass_cols(tmp, (c1 - c0) * step, out_rows, step, channels, dst.buf, out_cols, cf.buf, cc.buf, cw.buf,
                  col_taps, c0);
    } else {
        pass_cols(in + r0 * stride, stride, r1 - r0, step, channels, tmp, out_cols, cf.buf, cc.buf, cw.buf,
                  col_taps, 0);
        pass_rows(tmp, out_cols * channels, out_cols * channels, dst.buf, out_rows, rf.buf, rc.buf, rw.buf, row_taps,
                  r0, acc);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(tmp);
    PyMem_RawFree(acc);
    if (src.obj != NULL) PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    PyBuffer_Release(&cf);
    PyBuffer_Release(&cc);
    PyBuffer_Release(&cw);
    PyBuffer_Release(&rf);
    PyBuffer_Release(&rc);
    PyBuffer_Release(&rw);
    return result;
}

static PyMethodDef methods[] = {
    {"resize", resize, METH_VARARGS, resize_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_resample", "PIL's 8-bit convolution resize, windowed and vectorised.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__resample(void) {
#ifdef HAVE_X86_VECTORS
    __builtin_cpu_init();
    have_sse41 = __builtin_cpu_supports("sse4.1");
#endif
    return PyModule_Create(&module);
}
