/*
 * fuzz_api.c -- fuzz target for the public C API (avz.h).
 *
 * The input bytes choose a parameter vector (629 floats taken from the bytes,
 * so NaN, infinities, denormals and out-of-range values all occur; short
 * inputs are padded with the defaults), the element count, the output size and
 * stride, the options (background, transform, zoom, antialias) and the vector
 * format, and an overlay into a 3-channel frame (its options and stride). Every
 * call must return a status code, and an overlay with a fade must leave the
 * pixels past fade_end alone; the sanitizers catch the rest.
 *
 * Two builds:
 *   clang -fsanitize=fuzzer,address,undefined ... fuzz_api.c avz.c   (libFuzzer)
 *   cc -DAVZ_FUZZ_MAIN -fsanitize=address,undefined ... fuzz_api.c avz.c
 *       ./fuzz SECONDS [SEED] [CORPUS_FILE...]: replays the corpus files, then
 *       random and mutated inputs until SECONDS have passed (no libFuzzer needed).
 */
#include "avz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AVZ_FUZZ_MAX_SIDE 96 /* keep each call cheap; the checks are size-independent */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint32_t take_u32(reader *r) {
    uint32_t v = 0;
    size_t k = r->n < 4 ? r->n : 4;
    memcpy(&v, r->p, k);
    r->p += k;
    r->n -= k;
    return v;
}

static double take_f64(reader *r) {
    double v = 0.0;
    size_t k = r->n < 8 ? r->n : 8;
    memcpy(&v, r->p, k);
    r->p += k;
    r->n -= k;
    return v;
}

static float take_f32(reader *r) {
    float v = 0.0f;
    size_t k = r->n < 4 ? r->n : 4;
    memcpy(&v, r->p, k);
    r->p += k;
    r->n -= k;
    return v;
}

/* A small or invalid side: most draws are valid sizes, some are 0, negative or huge. */
static int pick_side(uint32_t v) {
    switch (v % 16) {
    case 0: return 0;
    case 1: return -(int)(v >> 8);
    case 2: return AVZ_MAX_SIZE + 1 + (int)((v >> 8) % 1000);
    default: return 1 + (int)((v >> 4) % AVZ_FUZZ_MAX_SIDE);
    }
}

static long rendered; /* inputs that drew an avatar (the driver reports it) */

/* After an overlay with a fade: no pixel whose centre lies past fade_end (canonical y,
 * through the inverse transform; a margin for rounding) may have changed from 0x80.
 * A fade_width of 1e-45 with a rotated transform once made the fade NaN there and
 * drew those pixels at full alpha (native/tests/corpus/overlay_denormal_fade). */
static void check_fade(const uint8_t *frame, int w, int h, int stride, const avz_overlay_options *o) {
    const double *m = o->transform;
    double det = m[0] * m[3] - m[1] * m[2];
    double ib = -m[1] / det, id = m[0] / det, iff = (m[1] * m[4] - m[0] * m[5]) / det;
    double slack = 1e-9 * (fabs(ib) * w + fabs(id) * h + fabs(iff) + fabs(o->fade_end) + 1.0);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double yc = ib * (x + 0.5) + id * (y + 0.5) + iff;
            const uint8_t *d = frame + (size_t)y * stride + 3 * (size_t)x;
            if (yc - o->fade_end > slack && (d[0] != 0x80 || d[1] != 0x80 || d[2] != 0x80)) {
                fprintf(stderr, "fuzz_api: overlay drew pixel (%d, %d) past fade_end %g (y %g, fade_width %g)\n",
                        x, y, (double)o->fade_end, yc, (double)o->fade_width);
                abort();
            }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader rd = {data, size};
    uint32_t mode = take_u32(&rd);
    float params[AVZ_PARAM_COUNT + 8];
    avz_default_params(params, AVZ_PARAM_COUNT);
    /* parameter edits: (index, value) pairs, or a raw block of floats */
    if (mode & 1u) {
        for (size_t i = 0; i < AVZ_PARAM_COUNT && rd.n >= 4; i++) params[i] = take_f32(&rd);
    } else {
        unsigned edits = (mode >> 1) % 32u;
        for (unsigned e = 0; e < edits && rd.n >= 6; e++) {
            uint32_t idx = take_u32(&rd) % AVZ_PARAM_COUNT;
            params[idx] = take_f32(&rd);
        }
    }
    size_t n = AVZ_PARAM_COUNT;
    uint32_t ctl = take_u32(&rd);
    if ((ctl & 15u) == 0) n = (ctl >> 4) % (AVZ_PARAM_COUNT + 8); /* wrong counts, 0 included */
    /* the first check every entry point does: counts, finiteness, ranges */
    char msg[256];
    (void)avz_validate(params, n, msg, sizeof msg);
    (void)avz_validate(params, n, msg, (ctl >> 8) % 4); /* tiny message buffers */

    avz_render_options opt;
    avz_render_options_init(&opt);
    uint32_t o = take_u32(&rd);
    if (o & 1u)
        for (int i = 0; i < 4; i++) opt.background[i] = take_f32(&rd);
    if (o & 2u) {
        opt.use_transform = 1;
        for (int i = 0; i < 6; i++) opt.transform[i] = take_f64(&rd);
    }
    if (o & 4u) opt.zoom = take_f64(&rd);
    if (o & 8u) opt.antialias = (int)(o >> 16);

    avz_renderer *r = NULL;
    if (avz_renderer_create(&r) != AVZ_OK) return 0;
    if (o & 32u) (void)avz_renderer_set_threads(r, (int)((o >> 6) % 5u)); /* 0 is refused; 2..4 draw in bands */
    int w = pick_side(take_u32(&rd)), h = pick_side(take_u32(&rd));
    uint32_t s = take_u32(&rd);
    int ok_size = w >= 1 && h >= 1 && w <= AVZ_FUZZ_MAX_SIDE && h <= AVZ_FUZZ_MAX_SIDE;
    int stride;
    if (!ok_size) stride = (int)s;                                   /* anything: the size is refused first */
    else if ((s >> 8) % 4 == 0) stride = 4 * w - 1 - (int)((s >> 12) % 64); /* too short (or negative) */
    else if ((s >> 8) % 4 == 1) stride = 4 * w + 1 + (int)((s >> 12) % 3);  /* not a multiple of 4 */
    else stride = 4 * w + 4 * (int)(s % 4);                          /* valid, maybe padded */
    /* exactly what the call may write (stride * height) when the size is valid, so
     * accepting a bad stride overflows the buffer and the sanitizer reports it */
    size_t bytes = ok_size ? (size_t)(stride > 0 ? stride : 1) * (size_t)h : 4 * AVZ_FUZZ_MAX_SIDE;
    uint8_t *rgba = malloc(bytes);
    if (rgba) {
        if (avz_render(r, params, n, rgba, w, h, stride, (o & 16u) ? NULL : &opt) == AVZ_OK) rendered++;
        (void)avz_render(r, params, n, NULL, w, h, stride, &opt); /* AVZ_E_NULL */
        free(rgba);
    }
    uint32_t ov = take_u32(&rd);
    if (ov % 3 == 0) { /* avz_overlay into a 3-channel frame (the frame sides and stride as above) */
        avz_overlay_options oo;
        avz_overlay_options_init(&oo);
        if (ov & 4u) {
            for (int i = 0; i < 6; i++) oo.transform[i] = take_f64(&rd);
        } else if (ok_size) {
            double t[6] = {w / 2.2, 0, 0, h / 2.2, w / 2.0, h / 2.0};
            memcpy(oo.transform, t, sizeof t);
        }
        if (ov & 8u)
            for (int i = 0; i < 4; i++) oo.box[i] = (int)take_u32(&rd);
        oo.opacity = (ov & 16u) ? take_f32(&rd) : 0.7f;
        oo.order = (int)((ov >> 5) % 3u);     /* 2 is invalid */
        oo.use_fade = (int)((ov >> 7) % 3u);  /* 2 is invalid */
        if (ov & 512u) { oo.fade_end = take_f32(&rd); oo.fade_width = take_f32(&rd); }
        oo.antialias = (int)((ov >> 10) % 3u); /* 2 is invalid */
        int fstride = ok_size ? 3 * w + (int)((ov >> 12) % 4u) - ((ov >> 14) % 5u == 0 ? 4 : 0) : (int)s;
        size_t fbytes = ok_size ? (size_t)(fstride > 0 ? fstride : 1) * (size_t)h : 3 * AVZ_FUZZ_MAX_SIDE;
        uint8_t *frame = malloc(fbytes);
        if (frame) {
            memset(frame, 0x80, fbytes);
            const avz_overlay_options *po = (ov >> 16) % 8u == 0 ? NULL : &oo;
            if (avz_overlay(r, params, n, frame, w, h, fstride, po) == AVZ_OK && po && oo.use_fade == 1)
                check_fade(frame, w, h, fstride, &oo);
            (void)avz_overlay(r, params, n, NULL, w, h, fstride, &oo); /* AVZ_E_NULL */
            free(frame);
        }
    }
    uint32_t v = take_u32(&rd);
    if (v % 4 == 0) {
        const uint8_t *doc = NULL;
        size_t doc_size = 0;
        double vw = (v >> 4) % 3 ? (double)(1 + (v >> 8) % 200) : take_f64(&rd);
        double vh = (v >> 6) % 3 ? vw : take_f64(&rd);
        (void)avz_render_vector(r, params, n, (int)((v >> 2) % 3), vw, vh, &opt, &doc, &doc_size);
        (void)avz_render_vector(r, params, n, AVZ_FORMAT_SVG, vw, vh, &opt, NULL, &doc_size);
    }
    (void)avz_renderer_error(r);
    avz_renderer_destroy(r);

    avz_scene *sc = NULL;
    if (avz_scene_create(&sc) == AVZ_OK) {
        if (avz_scene_build(sc, params, n) == AVZ_OK) {
            const avz_item *items = NULL;
            const float *path = NULL;
            size_t ni = 0, np = 0;
            avz_scene_items(sc, &items, &ni);
            avz_scene_path(sc, &path, &np);
            volatile float sink = 0.0f;
            for (size_t i = 0; i < ni; i++) {
                if (items[i].path_begin > items[i].path_end || items[i].path_end > np) abort();
                sink += items[i].width;
            }
            (void)sink;
        }
        (void)avz_scene_error(sc);
        avz_scene_destroy(sc);
    }
    (void)avz_status_string((avz_status)(ctl >> 20));
    return 0;
}

#ifdef AVZ_FUZZ_MAIN
#include <time.h>

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) { /* xorshift64 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    if (argc > 2) rng_state = strtoull(argv[2], NULL, 10) | 1u;
    enum { CAP = 4 * AVZ_PARAM_COUNT + 256 };
    static uint8_t pool[16][CAP];
    static size_t pool_n[16];
    int npool = 0;
    long runs = 0;
    for (int i = 3; i < argc && npool < 16; i++) { /* the corpus, replayed as is first */
        pool_n[npool] = read_file(argv[i], pool[npool], CAP);
        LLVMFuzzerTestOneInput(pool[npool], pool_n[npool]);
        runs++;
        npool++;
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    static uint8_t buf[CAP];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) >= seconds) break;
        size_t n;
        uint64_t how = rng();
        if (npool && how % 2) { /* mutate a corpus entry: flip bytes, splice special floats */
            int k = (int)(rng() % (uint64_t)npool);
            n = pool_n[k];
            memcpy(buf, pool[k], n);
            for (int m = 0, edits = 1 + (int)(rng() % 8); m < edits && n >= 4; m++) {
                size_t at = (size_t)(rng() % (n - 3));
                static const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f, -0.0f,
                                                 1e-45f, 1.0f, -1.0f, 2.0f, 255.0f};
                if (rng() % 2) memcpy(buf + at, &specials[rng() % 12], 4);
                else buf[at] ^= (uint8_t)(1u << (rng() % 8));
            }
        } else { /* fresh random bytes of a random length */
            n = (size_t)(rng() % CAP);
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng();
        }
        LLVMFuzzerTestOneInput(buf, n);
        runs++;
    }
    printf("fuzz_api: %ld inputs in %.1f s (%ld drew an avatar), no crash\n", runs, seconds, rendered);
    return 0;
}
#endif
