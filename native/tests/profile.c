/*
 * profile.c -- where one avz_render spends its time, step by step and by item
 * kind (docs/render_profile.md). It includes avz.c to reach the private steps.
 *
 *     python benchmarks/render.py --dump-scenes scenes.f32   # real avatars, N x 629 float32
 *     make profile-render SCENES=scenes.f32 [SIZE=256] [REPS=10]
 *     native/build/avz_profile scenes.f32 256 10
 *
 * Prints per frame: CPU microseconds (this thread) for the scene build, the
 * surface set-up and background, fills / strokes outside and inside clip
 * groups, clip set-up, the un-premultiply pass, and the counts of each; then
 * the floor table: whole frames with the default antialiasing, FAST, none,
 * and at 1x1 px, interleaved (p50 / p95 / p99 / max).
 */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "avz.c"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The floor of a frame on cairo: the whole avz_render path (scene build, set-up,
 * drawing, un-premultiply) with the default antialiasing, with FAST (4x4
 * coverage), with none at all, and at 1x1 px (what does not depend on the
 * size), interleaved scene by scene so that load swings hit all alike. */
static void floor_table(avz_scene *s, const float *P, size_t n, int size, int reps, uint8_t *buf) {
    enum { NV = 4 };
    const char *name[NV] = {"antialias default", "antialias FAST", "antialias NONE", "default at 1x1 px"};
    size_t total = n * (size_t)reps, k = 0;
    double *T[NV];
    for (int v = 0; v < NV; v++)
        if (!(T[v] = malloc(total * sizeof(double)))) return;
    avz_render_options o;
    avz_render_options_init(&o);
    for (int i = 0; i < 4; i++) o.background[i] = 1.f;
    for (int rep = 0; rep < reps; rep++)
        for (size_t i = 0; i < n; i++, k++)
            for (int v = 0; v < NV; v++) {
                int px = v == 3 ? 1 : size;
                double a = now_us();
                if (avz_scene_build(s, P + i * AVZ_PARAM_COUNT, AVZ_PARAM_COUNT) != AVZ_OK) return;
                cairo_surface_t *surf = cairo_image_surface_create_for_data(buf, CAIRO_FORMAT_ARGB32, px, px, 4 * px);
                cairo_t *cr = cairo_create(surf);
                o.antialias = v == 1 ? AVZ_AA_FAST : AVZ_AA_BEST;
                avz__setup(cr, px, px, &o);
                if (v == 2) cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
                avz__draw_scene(cr, s);
                cairo_destroy(cr);
                cairo_surface_flush(surf);
                cairo_surface_destroy(surf);
                avz__unpremultiply(buf, px, px, 4 * px);
                T[v][k] = now_us() - a;
            }
    printf("floor, whole frame interleaved (CPU us p50 / p95 / p99 / max at %d px):\n", size);
    for (int v = 0; v < NV; v++) {
        qsort(T[v], total, sizeof(double), cmp_double);
        printf("  %-18s %6.0f / %6.0f / %6.0f / %6.0f\n", name[v], T[v][total / 2], T[v][(size_t)(total * .95)],
               T[v][(size_t)(total * .99)], T[v][total - 1]);
        free(T[v]);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCENES.f32 [SIZE] [REPS]\n", argv[0]);
        return 2;
    }
    int size = argc > 2 ? atoi(argv[2]) : 256, reps = argc > 3 ? atoi(argv[3]) : 10;
    FILE *f = fopen(argv[1], "rb");
    if (!f || size < 1 || size > 4096 || reps < 1) {
        fprintf(stderr, "cannot read %s, or a bad size / repeat count\n", argv[1]);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = (size_t)bytes / (4 * AVZ_PARAM_COUNT);
    float *P = malloc(n * AVZ_PARAM_COUNT * 4 + 4);
    if (!P || n == 0 || fread(P, 4 * AVZ_PARAM_COUNT, n, f) != n) {
        fprintf(stderr, "%s holds no whole %d-float parameter vector\n", argv[1], AVZ_PARAM_COUNT);
        return 2;
    }
    fclose(f);
    avz_scene *s = NULL;
    uint8_t *buf = malloc((size_t)4 * size * size);
    if (avz_scene_create(&s) != AVZ_OK || !buf) return 2;
    avz_render_options o;
    avz_render_options_init(&o);
    for (int i = 0; i < 4; i++) o.background[i] = 1.f; /* on white, as benchmarks/render.py */
    double t_build = 0, t_setup = 0, t_unp = 0, t_total = 0, t[2][2] = {{0}}, t_clip = 0;
    long cnt[2][2] = {{0}}, clips = 0, frames = 0;
    for (int rep = 0; rep < reps; rep++)
        for (size_t i = 0; i < n; i++) {
            double t0 = now_us();
            if (avz_scene_build(s, P + i * AVZ_PARAM_COUNT, AVZ_PARAM_COUNT) != AVZ_OK) {
                fprintf(stderr, "scene %zu: %s\n", i, avz_scene_error(s));
                return 1;
            }
            double t1 = now_us();
            cairo_surface_t *surf = cairo_image_surface_create_for_data(buf, CAIRO_FORMAT_ARGB32, size, size, 4 * size);
            cairo_t *cr = cairo_create(surf);
            avz__setup(cr, size, size, &o);
            double t2 = now_us();
            int depth = 0;
            for (size_t k = 0; k < s->n_items; k++) { /* avz__draw_scene, timed item by item */
                const avz_item *it = &s->items[k];
                double a = now_us();
                int kind = it->kind == AVZ_ITEM_STROKE, inside = depth > 0;
                avz__draw_item(cr, s, it, &depth);
                double d = now_us() - a;
                if (it->kind == AVZ_ITEM_FILL || it->kind == AVZ_ITEM_STROKE) {
                    t[kind][inside] += d;
                    cnt[kind][inside]++;
                } else {
                    t_clip += d;
                    clips += it->kind == AVZ_ITEM_CLIP_PUSH;
                }
            }
            while (depth-- > 0) cairo_restore(cr);
            cairo_destroy(cr);
            cairo_surface_flush(surf);
            cairo_surface_destroy(surf);
            double t3 = now_us();
            avz__unpremultiply(buf, size, size, 4 * size);
            double t4 = now_us();
            t_build += t1 - t0; t_setup += t2 - t1; t_unp += t4 - t3; t_total += t4 - t0;
            frames++;
        }
    double F = (double)frames;
    printf("%zu scenes x %d at %d px, CPU us per frame: total %.0f | build %.0f, set-up %.0f, un-premultiply %.0f\n",
           n, reps, size, t_total / F, t_build / F, t_setup / F, t_unp / F);
    printf("fills %.0f (%.1f) + in clips %.0f (%.1f) | strokes %.0f (%.1f) + in clips %.0f (%.1f) | clip set-up %.0f (%.1f groups)\n",
           t[0][0] / F, cnt[0][0] / F, t[0][1] / F, cnt[0][1] / F, t[1][0] / F, cnt[1][0] / F, t[1][1] / F,
           cnt[1][1] / F, t_clip / F, clips / F);
    floor_table(s, P, n, size, reps, buf);
    avz_scene_destroy(s);
    free(buf);
    free(P);
    return 0;
}
