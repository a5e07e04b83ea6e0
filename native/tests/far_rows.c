/*
 * far_rows.c -- avz_render into rows far apart: any stride that is a multiple
 * of 4 up to INT_MAX is legal, but cairo and pixman find a row as y * stride
 * in int, so with stride * rows over INT_MAX the rows past it were written at
 * a wrapped offset (stride 2^30, 9 rows: SIGSEGV). The buffers are lazily
 * backed mappings (MAP_NORESERVE: only the pages of the drawn rows are ever
 * allocated). Each image, on one thread and in bands on two, must come out
 * as a tight-stride render of the same size draws it. Built and run by
 * tests/test_sanitize.py (ASan + UBSan); exit status 0 when every image does.
 */
#define _DEFAULT_SOURCE
#include "avz.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

static int check(avz_renderer *r, const float *p, int stride, int w, int h) {
    size_t len = (size_t)stride * (size_t)(h - 1) + 4 * (size_t)w;
    uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (buf == MAP_FAILED) {
        printf("stride %d x %d rows: no mapping of %zu bytes, not checked\n", stride, h, len);
        return 4; /* (a status of its own: the test skips, it does not pass unchecked) */
    }
    uint8_t *ref = malloc(4 * (size_t)w * h);
    if (!ref) return 1;
    avz_render_options o;
    avz_render_options_init(&o);
    o.background[0] = o.background[1] = o.background[2] = o.background[3] = 1.f; /* every pixel written */
    avz_status a = avz_render(r, p, AVZ_PARAM_COUNT, buf, w, h, stride, &o);
    avz_status b = avz_render(r, p, AVZ_PARAM_COUNT, ref, w, h, 4 * w, &o);
    int bad = a != AVZ_OK || b != AVZ_OK, worst = 0;
    for (int y = 0; y < h && !bad; y++)
        for (int x = 0; x < 4 * w; x++) {
            int d = abs((int)buf[(size_t)y * stride + x] - (int)ref[(size_t)y * 4 * w + x]);
            if (d > worst) worst = d;
        }
    if (worst > 3) bad = 1; /* as where an outline meets a band edge */
    printf("stride %d x %d rows, %d px wide: status %d, largest difference %d%s\n", stride, h, w, a, worst,
           bad ? " FAILED" : "");
    free(ref);
    munmap(buf, len);
    return bad;
}

int main(void) {
    float p[AVZ_PARAM_COUNT];
    avz_default_params(p, AVZ_PARAM_COUNT);
    avz_renderer *r;
    if (avz_renderer_create(&r) != AVZ_OK) return 2;
    int bad = 0;
    bad |= check(r, p, 1 << 30, 16, 9);         /* the reviewer's crash */
    bad |= check(r, p, INT_MAX - 3, 8, 3);      /* the largest legal stride: one row a surface */
    bad |= check(r, p, 1 << 26, 40, 48);        /* 31 rows a surface */
    if (avz_renderer_set_threads(r, 2) != AVZ_OK) return 2;
    bad |= check(r, p, 1 << 27, 24, 96);        /* two threads, bands of 32 rows cut in surfaces of 15 */
    avz_renderer_destroy(r);
    if (bad & 1) return 1; /* a row drawn wrong fails, whatever could not be mapped */
    if (bad) return 3;     /* nothing wrong, but some stride could not be mapped: not checked */
    printf("every row drawn\n");
    return 0;
}
