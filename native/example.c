/*
 * example.c -- the avz C API end to end: render the default avatar to a PAM
 * image and an SVG file, and show how errors come back as status codes.
 *
 *   cc -Inative native/example.c native/avz.c $(pkg-config --cflags --libs cairo) -lm -pthread
 *   mkdir -p out && ./a.out out/example        # writes out/example.pam and out/example.svg
 *
 * Exit status 0 when every check passed.
 */
#include "avz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int expect(const char *what, avz_status got, avz_status want, avz_renderer *r) {
    if (got != want) {
        fprintf(stderr, "FAIL %s: got '%s' (%s), wanted '%s'\n", what, avz_status_string(got),
                avz_renderer_error(r), avz_status_string(want));
        return 1;
    }
    printf("ok   %-28s %s%s%s\n", what, avz_status_string(got), got ? ": " : "", got ? avz_renderer_error(r) : "");
    return 0;
}

int main(int argc, char **argv) {
    const char *prefix = argc > 1 ? argv[1] : "example";
    int fails = 0;
    /* the library linked is the one this program was built against */
    if (strcmp(avz_version(), AVZ_VERSION) != 0) {
        fprintf(stderr, "FAIL avz.h is %s, the library %s\n", AVZ_VERSION, avz_version());
        return 2;
    }
    printf("ok   %-28s %s\n", "header and library version", avz_version());
    avz_renderer *r = NULL;
    if (avz_renderer_create(&r) != AVZ_OK) return 2;

    float params[AVZ_PARAM_COUNT];
    avz_default_params(params, AVZ_PARAM_COUNT);
    const int w = 384, h = 448, stride = 4 * w + 64; /* any stride >= 4*w, multiple of 4 */
    uint8_t *rgba = calloc((size_t)stride * h, 1);
    if (!rgba) return 2;
    avz_render_options opt;
    avz_render_options_init(&opt);
    opt.background[0] = opt.background[1] = opt.background[2] = opt.background[3] = 1.0f; /* white */

    fails += expect("render default avatar", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt), AVZ_OK, r);
    char path[1024];
    snprintf(path, sizeof path, "%s.pam", prefix);
    FILE *f = fopen(path, "wb");
    if (f) {
        fprintf(f, "P7\nWIDTH %d\nHEIGHT %d\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n", w, h);
        for (int y = 0; y < h; y++) fwrite(rgba + (size_t)y * stride, 4, (size_t)w, f);
        fclose(f);
    } else {
        fprintf(stderr, "cannot write %s\n", path);
        fails++;
    }
    const uint8_t *svg = NULL;
    size_t svg_len = 0;
    fails += expect("render SVG", avz_render_vector(r, params, AVZ_PARAM_COUNT, AVZ_FORMAT_SVG, w, h, &opt, &svg, &svg_len), AVZ_OK, r);
    snprintf(path, sizeof path, "%s.svg", prefix);
    f = fopen(path, "wb");
    if (f && svg) { fwrite(svg, 1, svg_len, f); fclose(f); } else { fails++; if (f) fclose(f); }

    /* bad input comes back as status codes, never a crash */
    fails += expect("wrong parameter count", avz_render(r, params, 10, rgba, w, h, stride, &opt), AVZ_E_PARAM_COUNT, r);
    float saved = params[5];
    params[5] = NAN;
    fails += expect("NaN parameter", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt), AVZ_E_NONFINITE, r);
    params[5] = 1e9f;
    fails += expect("out-of-range parameter", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt), AVZ_E_RANGE, r);
    params[5] = saved;
    fails += expect("zero size", avz_render(r, params, AVZ_PARAM_COUNT, rgba, 0, h, stride, &opt), AVZ_E_SIZE, r);
    fails += expect("huge size", avz_render(r, params, AVZ_PARAM_COUNT, rgba, 100000, h, stride, &opt), AVZ_E_SIZE, r);
    fails += expect("short stride", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, 3 * w, &opt), AVZ_E_STRIDE, r);
    fails += expect("NULL buffer", avz_render(r, params, AVZ_PARAM_COUNT, NULL, w, h, stride, &opt), AVZ_E_NULL, r);
    fails += expect("NULL params", avz_render(r, NULL, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt), AVZ_E_NULL, r);
    opt.background[0] = NAN;
    fails += expect("NaN background", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt), AVZ_E_ARG, r);
    fails += expect("default still renders", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, NULL), AVZ_OK, r);

    /* (since 1.2) one image in bands on two threads: the calling one and a helper the handle keeps */
    fails += expect("two threads", avz_renderer_set_threads(r, 2), AVZ_OK, r);
    fails += expect("render on two threads", avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, NULL), AVZ_OK, r);
    fails += expect("zero threads", avz_renderer_set_threads(r, 0), AVZ_E_ARG, r);

    free(rgba);
    avz_renderer_destroy(r);
    avz_renderer_destroy(NULL); /* destroy accepts NULL */
    printf("%s (%d failed)\n", fails ? "FAILED" : "all checks passed", fails);
    return fails ? 1 : 0;
}
