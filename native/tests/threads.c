/*
 * threads.c -- two renderers on two threads, first render at the same moment
 * (what avz.h allows: one handle per thread), the second drawing each image in
 * bands on its own helper threads (avz_renderer_set_threads, 2 and 3 in turn,
 * so its helpers are stopped and started again). Built and run by `make
 * sanitize` under ThreadSanitizer (and ASan/UBSan); exit status 0 when the
 * first thread drew exactly what a single-threaded render draws and the
 * banded one the same within one level.
 */
#define _POSIX_C_SOURCE 200809L
#include "avz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 192
#define H 160
#define ROUNDS 3

static pthread_barrier_t start;

typedef struct job {
    float params[AVZ_PARAM_COUNT];
    uint8_t rgba[W * H * 4];
    uint8_t frame[W * H * 3]; /* avz_overlay's target (the renderer keeps a scratch image) */
    avz_status status;
    size_t svg_size;
    int banded; /* draw in bands: 2 and 3 threads in turn */
} job;

static avz_status overlay(avz_renderer *r, job *j) {
    for (size_t i = 0; i < sizeof j->frame; i++) j->frame[i] = (uint8_t)(i * 7u);
    avz_overlay_options o;
    avz_overlay_options_init(&o);
    double t[6] = {50, 8, -8, 50, W / 2.0, H / 2.0}; /* rolled, partly off the frame */
    memcpy(o.transform, t, sizeof t);
    o.box[0] = -10; o.box[1] = 20; o.box[2] = W + 5; o.box[3] = H;
    o.opacity = 0.8f;
    o.order = AVZ_ORDER_BGR;
    o.use_fade = 1; o.fade_end = 1.1f; o.fade_width = 0.2f;
    return avz_overlay(r, j->params, AVZ_PARAM_COUNT, j->frame, W, H, 3 * W, &o);
}

static void *work(void *arg) {
    job *j = arg;
    avz_renderer *r = NULL;
    j->status = avz_renderer_create(&r);
    pthread_barrier_wait(&start); /* both threads' first render starts together */
    for (int i = 0; i < ROUNDS && j->status == AVZ_OK; i++) {
        if (j->banded) j->status = avz_renderer_set_threads(r, 2 + i % 2);
        if (j->status != AVZ_OK) break;
        j->status = avz_render(r, j->params, AVZ_PARAM_COUNT, j->rgba, W, H, 4 * W, NULL);
        if (j->status == AVZ_OK) {
            const uint8_t *data = NULL;
            j->status = avz_render_vector(r, j->params, AVZ_PARAM_COUNT, AVZ_FORMAT_SVG, W, H, NULL, &data,
                                          &j->svg_size);
        }
        if (j->status == AVZ_OK) j->status = overlay(r, j);
    }
    avz_renderer_destroy(r);
    return NULL;
}

/* 1 if two images differ: at all, or (banded) by more than one level */
static int differs(const uint8_t *a, const uint8_t *b, size_t n, int banded) {
    for (size_t i = 0; i < n; i++) {
        int d = (int)a[i] - (int)b[i];
        if (banded ? d > 1 || d < -1 : d != 0) return 1;
    }
    return 0;
}

int main(void) {
    static job jobs[2], ref;
    avz_default_params(ref.params, AVZ_PARAM_COUNT);
    memcpy(jobs[0].params, ref.params, sizeof ref.params);
    memcpy(jobs[1].params, ref.params, sizeof ref.params);
    jobs[1].banded = 1;
    pthread_barrier_init(&start, NULL, 2);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, work, &jobs[i]) != 0) return 2;
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);

    avz_renderer *r = NULL;
    if (avz_renderer_create(&r) != AVZ_OK) return 2;
    avz_status st = avz_render(r, ref.params, AVZ_PARAM_COUNT, ref.rgba, W, H, 4 * W, NULL);
    if (st == AVZ_OK) st = overlay(r, &ref);
    avz_renderer_destroy(r);
    int fails = st != AVZ_OK, changed = 0;
    for (size_t i = 0; i < sizeof ref.frame; i++) changed += ref.frame[i] != (uint8_t)(i * 7u);
    if (changed < W * H / 10) {
        fprintf(stderr, "FAIL the overlay changed only %d bytes of the frame\n", changed);
        fails++;
    }
    for (int i = 0; i < 2; i++) {
        if (jobs[i].status != AVZ_OK) {
            fprintf(stderr, "FAIL thread %d: %s\n", i, avz_status_string(jobs[i].status));
            fails++;
        } else if (differs(jobs[i].rgba, ref.rgba, sizeof ref.rgba, jobs[i].banded)) {
            fprintf(stderr, "FAIL thread %d drew a different image than a single-threaded render\n", i);
            fails++;
        } else if (differs(jobs[i].frame, ref.frame, sizeof ref.frame, jobs[i].banded)) {
            fprintf(stderr, "FAIL thread %d overlaid a different frame than a single-threaded overlay\n", i);
            fails++;
        }
    }
    /* the thread count's range */
    if (avz_renderer_create(&r) != AVZ_OK) return 2;
    if (avz_renderer_set_threads(r, 0) != AVZ_E_ARG || avz_renderer_set_threads(r, AVZ_MAX_THREADS + 1) != AVZ_E_ARG ||
        avz_renderer_threads(r) != 1 || avz_renderer_set_threads(NULL, 2) != AVZ_E_NULL) {
        fprintf(stderr, "FAIL avz_renderer_set_threads accepted a count outside 1..%d\n", AVZ_MAX_THREADS);
        fails++;
    }
    avz_renderer_destroy(r);
    if (!fails) printf("ok   two renderers on two threads (one drawing in bands): the same %dx%d renders and overlays\n", W, H);
    return fails ? 1 : 0;
}
