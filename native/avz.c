/*
 * avz.c -- scene building (the single source of avatar geometry) and Cairo
 * rendering. See avz.h for the public API. Private helpers start with avz__.
 */
#include "avz.h"
#include "avz_schema.h"

#include <cairo.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AVZ__PI 3.14159265358979323846f
#define AVZ__MAXPTS 64
#define AVZ__TOLERANCE 0.25 /* device pixels; keep in step with render.py's pycairo backend */
#define AVZ__MIN_BAND_ROWS 32 /* a band of fewer rows costs more in per-shape set-up than it saves */

_Static_assert(AVZ_PARAM_COUNT == 629, "schema and public header disagree on the parameter count");

/* ------------------------------------------------------------ status text */

const char *avz_status_string(avz_status s) {
    switch (s) {
    case AVZ_OK: return "ok";
    case AVZ_E_NULL: return "a required pointer argument was NULL";
    case AVZ_E_PARAM_COUNT: return "the parameter vector has the wrong length";
    case AVZ_E_NONFINITE: return "a parameter is NaN or infinite";
    case AVZ_E_RANGE: return "a parameter is outside its schema range";
    case AVZ_E_SIZE: return "the output size is invalid";
    case AVZ_E_STRIDE: return "the row stride is invalid";
    case AVZ_E_NOMEM: return "out of memory";
    case AVZ_E_CAIRO: return "cairo reported an error";
    case AVZ_E_ARG: return "an argument is invalid";
    }
    return "unknown status code";
}

const char *avz_version(void) { return AVZ_VERSION; }
const char *avz_schema_version(void) { return AVZ_SCHEMA_VERSION; }

avz_status avz_default_params(float *out, size_t n) {
    if (!out) return AVZ_E_NULL;
    if (n != AVZ_PARAM_COUNT) return AVZ_E_PARAM_COUNT;
    memcpy(out, avz__param_default, sizeof(avz__param_default));
    return AVZ_OK;
}

/* ``v`` as %g does in the C locale, whatever the process's LC_NUMERIC: a run of other bytes than digits,
 * signs and the exponent's e (the locale's decimal point: "," in de_DE, several bytes in some) becomes ".".
 * (Under de_DE a range read "[-0,16, 0,16]", its bounds lost among the commas: a review, session 65.) */
static const char *avz__num(char out[32], double v) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%g", v);
    size_t k = 0;
    int other = 0;
    for (const char *c = tmp; *c && k < 31; c++) {
        int keep = (*c >= '0' && *c <= '9') || *c == '-' || *c == '+' || *c == 'e';
        if (keep) { out[k++] = *c; other = 0; }
        else if (!other) { out[k++] = '.'; other = 1; }
    }
    out[k] = 0;
    return out;
}

avz_status avz_validate(const float *p, size_t n, char *msg, size_t msg_size) {
    char dummy[8];
    if (!msg || msg_size == 0) { msg = dummy; msg_size = sizeof dummy; }
    msg[0] = 0;
    if (!p) { snprintf(msg, msg_size, "params is NULL"); return AVZ_E_NULL; }
    if (n != AVZ_PARAM_COUNT) {
        snprintf(msg, msg_size, "expected %d parameters, got %zu", AVZ_PARAM_COUNT, n);
        return AVZ_E_PARAM_COUNT;
    }
    for (size_t i = 0; i < n; i++) {
        float v = p[i];
        if (!isfinite(v)) {
            snprintf(msg, msg_size, "parameter %zu (%s) is %s", i, avz__param_name[i],
                     isnan(v) ? "NaN" : "infinite");
            return AVZ_E_NONFINITE;
        }
    }
    for (size_t i = 0; i < n; i++) {
        float lo = avz__param_lo[i], hi = avz__param_hi[i], tol = 1e-4f * (hi - lo) + 1e-6f;
        if (p[i] < lo - tol || p[i] > hi + tol) {
            char a[32], b[32], c[32];
            snprintf(msg, msg_size, "parameter %zu (%s) is %s, outside its range [%s, %s]", i,
                     avz__param_name[i], avz__num(a, (double)p[i]), avz__num(b, (double)lo), avz__num(c, (double)hi));
            return AVZ_E_RANGE;
        }
    }
    return AVZ_OK;
}

/* ------------------------------------------------------------------ scene */

struct avz_scene {
    avz_item *items;
    size_t n_items, cap_items;
    float *path;
    size_t n_path, cap_path;
    size_t path_start; /* start of the path being built */
    int oom;
    char error[256];
};

typedef struct { float x, y; } avz__pt;

avz_status avz_scene_create(avz_scene **out) {
    if (!out) return AVZ_E_NULL;
    *out = calloc(1, sizeof(avz_scene));
    return *out ? AVZ_OK : AVZ_E_NOMEM;
}

void avz_scene_destroy(avz_scene *s) {
    if (!s) return;
    free(s->items);
    free(s->path);
    free(s);
}

const char *avz_scene_error(const avz_scene *s) { return s ? s->error : "scene is NULL"; }

static void avz__emit(avz_scene *s, const float *v, size_t n) {
    if (s->oom) return;
    if (s->n_path + n > s->cap_path) {
        size_t cap = s->cap_path ? s->cap_path * 2 : 8192;
        while (cap < s->n_path + n) cap *= 2;
        float *np = realloc(s->path, cap * sizeof(float));
        if (!np) { s->oom = 1; return; }
        s->path = np;
        s->cap_path = cap;
    }
    memcpy(s->path + s->n_path, v, n * sizeof(float));
    s->n_path += n;
}

static void avz__move(avz_scene *s, avz__pt p) { float v[3] = {AVZ_OP_MOVE, p.x, p.y}; avz__emit(s, v, 3); }
static void avz__line(avz_scene *s, avz__pt p) { float v[3] = {AVZ_OP_LINE, p.x, p.y}; avz__emit(s, v, 3); }
static void avz__curve(avz_scene *s, avz__pt a, avz__pt b, avz__pt c) {
    float v[7] = {AVZ_OP_CURVE, a.x, a.y, b.x, b.y, c.x, c.y};
    avz__emit(s, v, 7);
}
static void avz__close(avz_scene *s) { float v[1] = {AVZ_OP_CLOSE}; avz__emit(s, v, 1); }

static void avz__item(avz_scene *s, int kind, float r, float g, float b, float a, float width) {
    if (s->oom) return;
    if (kind == AVZ_ITEM_FILL || kind == AVZ_ITEM_STROKE) {
        if (a <= 0.002f || s->n_path == s->path_start) { s->n_path = s->path_start; return; }
        if (kind == AVZ_ITEM_STROKE && width <= 1e-5f) { s->n_path = s->path_start; return; }
    }
    if (s->n_items == s->cap_items) {
        size_t cap = s->cap_items ? s->cap_items * 2 : 256;
        avz_item *ni = realloc(s->items, cap * sizeof(avz_item));
        if (!ni) { s->oom = 1; return; }
        s->items = ni;
        s->cap_items = cap;
    }
    avz_item *it = &s->items[s->n_items++];
    it->kind = kind;
    it->rgba[0] = fminf(fmaxf(r, 0.f), 1.f);
    it->rgba[1] = fminf(fmaxf(g, 0.f), 1.f);
    it->rgba[2] = fminf(fmaxf(b, 0.f), 1.f);
    it->rgba[3] = fminf(fmaxf(a, 0.f), 1.f);
    it->width = width;
    it->path_begin = (uint32_t)s->path_start;
    it->path_end = (uint32_t)s->n_path;
    s->path_start = s->n_path;
}

typedef struct { float r, g, b; } avz__rgb;

static void avz__fill(avz_scene *s, avz__rgb c, float a) { avz__item(s, AVZ_ITEM_FILL, c.r, c.g, c.b, a, 0); }
static void avz__stroke(avz_scene *s, avz__rgb c, float a, float w) {
    avz__item(s, AVZ_ITEM_STROKE, c.r, c.g, c.b, a, w);
}
static void avz__clip_push(avz_scene *s) { avz__item(s, AVZ_ITEM_CLIP_PUSH, 0, 0, 0, 1, 0); }
static void avz__clip_pop(avz_scene *s) { s->n_path = s->path_start; avz__item(s, AVZ_ITEM_CLIP_POP, 0, 0, 0, 1, 0); }

/* ---- geometry helpers */

static avz__pt avz__add(avz__pt a, avz__pt b) { return (avz__pt){a.x + b.x, a.y + b.y}; }
static avz__pt avz__sub(avz__pt a, avz__pt b) { return (avz__pt){a.x - b.x, a.y - b.y}; }
static avz__pt avz__mul(avz__pt a, float k) { return (avz__pt){a.x * k, a.y * k}; }
static avz__pt avz__lerp(avz__pt a, avz__pt b, float t) { return (avz__pt){a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t}; }
static float avz__len(avz__pt a) { return sqrtf(a.x * a.x + a.y * a.y); }
static avz__rgb avz__shade(avz__rgb c, float k) { return (avz__rgb){c.r * k, c.g * k, c.b * k}; }
static avz__rgb avz__mix(avz__rgb a, avz__rgb b, float t) {
    return (avz__rgb){a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}

static avz__pt avz__fpt(const float *p, int off, int i) { return (avz__pt){p[off + 2 * i], p[off + 2 * i + 1]}; }
static void avz__fpts(const float *p, int off, int n, avz__pt *out) {
    for (int i = 0; i < n; i++) out[i] = avz__fpt(p, off, i);
}
static avz__rgb avz__frgb(const float *p, int idx) { return (avz__rgb){p[idx], p[idx + 1], p[idx + 2]}; }

/* Catmull-Rom (uniform, tension 1/2) tangent controls for segment i..i+1. */
static void avz__cr_controls(const avz__pt *pts, int n, int closed, int i, avz__pt *c1, avz__pt *c2) {
    int i0 = i - 1, i2 = i + 1, i3 = i + 2;
    if (closed) {
        i0 = (i0 + n) % n; i2 %= n; i3 %= n;
    } else {
        if (i0 < 0) i0 = 0;
        if (i3 > n - 1) i3 = n - 1;
    }
    avz__pt p0 = pts[i0], p1 = pts[i], p2 = pts[i2], p3 = pts[i3];
    *c1 = avz__add(p1, avz__mul(avz__sub(p2, p0), 1.f / 6.f));
    *c2 = avz__sub(p2, avz__mul(avz__sub(p3, p1), 1.f / 6.f));
}

/* Appends a smooth curve through pts (move_to first point when `move`). */
static void avz__cr_path(avz_scene *s, const avz__pt *pts, int n, int closed, int move) {
    if (n <= 0) return;
    if (move) avz__move(s, pts[0]); else avz__line(s, pts[0]);
    int segs = closed ? n : n - 1;
    for (int i = 0; i < segs; i++) {
        avz__pt c1, c2;
        avz__cr_controls(pts, n, closed, i, &c1, &c2);
        avz__curve(s, c1, c2, pts[(i + 1) % n]);
    }
    if (closed) avz__close(s);
}

static avz__pt avz__bez(avz__pt p0, avz__pt c1, avz__pt c2, avz__pt p3, float t) {
    float u = 1 - t, a = u * u * u, b = 3 * u * u * t, c = 3 * u * t * t, d = t * t * t;
    return (avz__pt){a * p0.x + b * c1.x + c * c2.x + d * p3.x, a * p0.y + b * c1.y + c * c2.y + d * p3.y};
}

/* Samples the Catmull-Rom curve: `per` samples per segment; returns count. */
static int avz__cr_sample(const avz__pt *pts, int n, int closed, int per, avz__pt *out, int max) {
    int segs = closed ? n : n - 1, k = 0;
    if (n == 1) { out[0] = pts[0]; return 1; }
    for (int i = 0; i < segs && k < max; i++) {
        avz__pt c1, c2;
        avz__cr_controls(pts, n, closed, i, &c1, &c2);
        for (int j = 0; j < per && k < max; j++)
            out[k++] = avz__bez(pts[i], c1, c2, pts[(i + 1) % n], (float)j / per);
    }
    if (!closed && k < max) out[k++] = pts[n - 1];
    return k;
}

enum { AVZ__TAPER = 0, AVZ__BULGE = 1, AVZ__BROW = 2 };

static float avz__profile(int profile, float w0, float w1, float wmid, float u) {
    switch (profile) {
    case AVZ__BULGE: return w0 + (w1 - w0) * sinf(AVZ__PI * u);
    case AVZ__BROW: {
        /* quadratic through (0,w0) (0.5,wmid) (1,w1), then a soft point at the tail */
        float a = 2 * w0 - 4 * wmid + 2 * w1, b = -3 * w0 + 4 * wmid - w1;
        float w = a * u * u + b * u + w0;
        float tail = fminf(1.f, (1.f - u) * 5.f + 0.2f);
        return fmaxf(w, 0.f) * tail;
    }
    default: return w0 + (w1 - w0) * u;
    }
}

/* The closed outline of a stroke whose width varies along the curve, appended
 * to the path being built (no item: avz__tapered_n fills it at once; a run of
 * strokes of one colour can be filled together). Returns 0 if nothing was added. */
static int avz__tapered_outline(avz_scene *s, const avz__pt *pts, int n, int profile, float w0, float w1,
                                float wmid, int per) {
    if (n < 2) return 0;
    if (fmaxf(fmaxf(w0, w1), wmid) <= 1e-5f) return 0;
    avz__pt smp[AVZ__MAXPTS], L[AVZ__MAXPTS], R[AVZ__MAXPTS];
    int m = avz__cr_sample(pts, n, 0, per, smp, AVZ__MAXPTS);
    float acc[AVZ__MAXPTS];
    acc[0] = 0;
    for (int i = 1; i < m; i++) acc[i] = acc[i - 1] + avz__len(avz__sub(smp[i], smp[i - 1]));
    float total = acc[m - 1] > 1e-6f ? acc[m - 1] : 1.f;
    for (int i = 0; i < m; i++) {
        avz__pt t = avz__sub(smp[i < m - 1 ? i + 1 : i], smp[i > 0 ? i - 1 : i]);
        float l = avz__len(t);
        avz__pt nrm = l > 1e-9f ? (avz__pt){-t.y / l, t.x / l} : (avz__pt){0, 1};
        float w = 0.5f * avz__profile(profile, w0, w1, wmid, acc[i] / total);
        L[i] = avz__add(smp[i], avz__mul(nrm, w));
        R[m - 1 - i] = avz__sub(smp[i], avz__mul(nrm, w));
    }
    avz__cr_path(s, L, m, 0, 1);
    avz__cr_path(s, R, m, 0, 0);
    avz__close(s);
    return 1;
}

/* A stroke whose width varies along the curve, drawn as a filled outline. */
static void avz__tapered_n(avz_scene *s, const avz__pt *pts, int n, int profile, float w0, float w1,
                           float wmid, avz__rgb c, float alpha, int per) {
    if (alpha <= 0.002f) return;
    if (avz__tapered_outline(s, pts, n, profile, w0, w1, wmid, per)) avz__fill(s, c, alpha);
}

/* Samples per control-point segment: enough for a smooth outline at any
 * size (the outline itself is a Catmull-Rom spline through the samples). */
static void avz__tapered(avz_scene *s, const avz__pt *pts, int n, int profile, float w0, float w1,
                         float wmid, avz__rgb c, float alpha) {
    avz__tapered_n(s, pts, n, profile, w0, w1, wmid, c, alpha, n <= 3 ? 4 : 3);
}

/* A closed smooth contour; with curl > 0 the edge becomes scalloped (curly hair). */
static void avz__contour(avz_scene *s, const avz__pt *pts, int n, float curl) {
    if (curl < 0.02f) { avz__cr_path(s, pts, n, 1, 1); return; }
    avz__pt smp[AVZ__MAXPTS];
    int m = avz__cr_sample(pts, n, 1, 4, smp, AVZ__MAXPTS);
    float area = 0;
    for (int i = 0; i < m; i++) {
        avz__pt a = smp[i], b = smp[(i + 1) % m];
        area += a.x * b.y - b.x * a.y;
    }
    float outward = area > 0 ? -1.f : 1.f; /* y-down frame */
    float amp = 0.045f * curl;
    avz__move(s, smp[0]);
    for (int i = 0; i < m; i++) {
        avz__pt a = smp[i], b = smp[(i + 1) % m], d = avz__sub(b, a);
        float l = avz__len(d);
        avz__pt nrm = l > 1e-9f ? (avz__pt){d.y / l * outward, -d.x / l * outward} : (avz__pt){0, 0};
        avz__pt bump = avz__mul(nrm, amp * fminf(1.f, l / 0.06f) * 1.33f);
        avz__curve(s, avz__add(avz__lerp(a, b, 0.15f), bump), avz__add(avz__lerp(a, b, 0.85f), bump), b);
    }
    avz__close(s);
}

static void avz__ellipse(avz_scene *s, avz__pt c, float rx, float ry) {
    const float k = 0.5522847f;
    avz__move(s, (avz__pt){c.x + rx, c.y});
    avz__curve(s, (avz__pt){c.x + rx, c.y + ry * k}, (avz__pt){c.x + rx * k, c.y + ry}, (avz__pt){c.x, c.y + ry});
    avz__curve(s, (avz__pt){c.x - rx * k, c.y + ry}, (avz__pt){c.x - rx, c.y + ry * k}, (avz__pt){c.x - rx, c.y});
    avz__curve(s, (avz__pt){c.x - rx, c.y - ry * k}, (avz__pt){c.x - rx * k, c.y - ry}, (avz__pt){c.x, c.y - ry});
    avz__curve(s, (avz__pt){c.x + rx * k, c.y - ry}, (avz__pt){c.x + rx, c.y - ry * k}, (avz__pt){c.x + rx, c.y});
    avz__close(s);
}

/* Rounded rectangle centred at c, half sizes hw/hh, corner radius r. */
static void avz__rrect(avz_scene *s, avz__pt c, float hw, float hh, float r) {
    const float k = 0.5522847f;
    r = fminf(r, fminf(hw, hh));
    float x0 = c.x - hw, x1 = c.x + hw, y0 = c.y - hh, y1 = c.y + hh;
    avz__move(s, (avz__pt){x0 + r, y0});
    avz__line(s, (avz__pt){x1 - r, y0});
    avz__curve(s, (avz__pt){x1 - r + r * k, y0}, (avz__pt){x1, y0 + r - r * k}, (avz__pt){x1, y0 + r});
    avz__line(s, (avz__pt){x1, y1 - r});
    avz__curve(s, (avz__pt){x1, y1 - r + r * k}, (avz__pt){x1 - r + r * k, y1}, (avz__pt){x1 - r, y1});
    avz__line(s, (avz__pt){x0 + r, y1});
    avz__curve(s, (avz__pt){x0 + r - r * k, y1}, (avz__pt){x0, y1 - r + r * k}, (avz__pt){x0, y1 - r});
    avz__line(s, (avz__pt){x0, y0 + r});
    avz__curve(s, (avz__pt){x0, y0 + r - r * k}, (avz__pt){x0 + r - r * k, y0}, (avz__pt){x0 + r, y0});
    avz__close(s);
}

/* ---- feature accessors (layout: points, then w0 w1 r g b, or opacity r g b) */

typedef struct { avz__pt pts[AVZ__MAXPTS]; int n; float w0, w1; avz__rgb c; float opacity; } avz__feat;

static avz__feat avz__stroke_feat(const float *p, int off, int n) {
    avz__feat f;
    f.n = n;
    avz__fpts(p, off, n, f.pts);
    f.w0 = p[off + 2 * n];
    f.w1 = p[off + 2 * n + 1];
    f.c = avz__frgb(p, off + 2 * n + 2);
    f.opacity = 1.f;
    return f;
}

static avz__feat avz__shape_feat(const float *p, int off, int n) {
    avz__feat f;
    f.n = n;
    avz__fpts(p, off, n, f.pts);
    f.w0 = f.w1 = 0;
    f.opacity = p[off + 2 * n];
    f.c = avz__frgb(p, off + 2 * n + 1);
    return f;
}

#define STROKE_F(name) avz__stroke_feat(p, AVZ_F_##name, AVZ_F_##name##_NPTS)
#define SHAPE_F(name) avz__shape_feat(p, AVZ_F_##name, AVZ_F_##name##_NPTS)

static void avz__shape(avz_scene *s, const avz__feat *f) {
    if (f->opacity <= 0.002f) return;
    avz__cr_path(s, f->pts, f->n, 1, 1);
    avz__fill(s, f->c, f->opacity);
}

static void avz__stroke_f(avz_scene *s, const avz__feat *f, int profile) {
    avz__tapered(s, f->pts, f->n, profile, f->w0, f->w1, 0, f->c, 1.f);
}

/* ---- layers */

static void avz__ear(avz_scene *s, const avz__feat *e) {
    avz__cr_path(s, e->pts, e->n, 0, 1);
    avz__close(s);
    avz__fill(s, e->c, 1.f);
    avz__cr_path(s, e->pts, e->n, 0, 1);
    avz__stroke(s, avz__shade(e->c, 0.72f), 1.f, e->w0);
    /* inner fold: the outline pulled toward the attachment line */
    avz__pt mid = avz__lerp(e->pts[0], e->pts[e->n - 1], 0.5f), in[AVZ__MAXPTS];
    for (int i = 0; i < e->n; i++) in[i] = avz__lerp(mid, e->pts[i], 0.6f);
    avz__tapered(s, in + 1, e->n - 2, AVZ__BULGE, 0.002f, 0.010f, 0, avz__shade(e->c, 0.78f), 0.8f);
}

static void avz__eye(avz_scene *s, const float *p, int up, int lo, int cr, int iris, float lash,
                     avz__rgb sclera) {
    avz__feat U = avz__stroke_feat(p, up, 5), Lw = avz__stroke_feat(p, lo, 5), C = avz__stroke_feat(p, cr, 3);
    avz__pt rev[5];
    for (int i = 0; i < 5; i++) rev[i] = Lw.pts[4 - i];
    /* eye opening */
    avz__cr_path(s, U.pts, 5, 0, 1);
    avz__cr_path(s, rev, 5, 0, 0);
    avz__close(s);
    avz__fill(s, sclera, 1.f);
    avz__cr_path(s, U.pts, 5, 0, 1);
    avz__cr_path(s, rev, 5, 0, 0);
    avz__close(s);
    avz__clip_push(s);
    avz__pt ic = {p[iris], p[iris + 1]};
    float r = p[iris + 2], pupil = p[iris + 3];
    avz__rgb irc = avz__frgb(p, iris + 4);
    avz__ellipse(s, ic, r, r);
    avz__fill(s, irc, 1.f);
    avz__ellipse(s, ic, r * 0.62f, r * 0.62f);
    avz__fill(s, avz__mix(irc, (avz__rgb){1, 1, 1}, 0.18f), 0.55f);
    avz__ellipse(s, ic, r * 0.97f, r * 0.97f);
    avz__stroke(s, avz__shade(irc, 0.55f), 1.f, r * 0.12f);
    avz__ellipse(s, ic, r * pupil, r * pupil);
    avz__fill(s, (avz__rgb){0.04f, 0.03f, 0.03f}, 1.f);
    avz__ellipse(s, (avz__pt){ic.x - r * 0.32f, ic.y - r * 0.36f}, r * 0.22f, r * 0.22f);
    avz__fill(s, (avz__rgb){1, 1, 1}, 0.9f);
    /* shadow of the upper lid on the eyeball */
    avz__tapered(s, U.pts, 5, AVZ__BULGE, 0.008f, 0.022f, 0, (avz__rgb){0.3f, 0.2f, 0.2f}, 0.18f);
    avz__clip_pop(s);
    /* lids */
    avz__tapered(s, Lw.pts, 5, AVZ__TAPER, Lw.w0, Lw.w1, 0, Lw.c, 0.9f);
    avz__tapered(s, U.pts, 5, AVZ__TAPER, U.w0, U.w1, 0, U.c, 1.f);
    avz__tapered(s, C.pts, 3, AVZ__BULGE, C.w0, C.w1, 0, C.c, 0.8f);
    if (lash > 0.002f) {
        /* a few lashes on the outer half of the upper lid, pointing away from the eye */
        avz__pt smp[AVZ__MAXPTS];
        int m = avz__cr_sample(U.pts, 5, 0, 4, smp, AVZ__MAXPTS);
        int inner_first = fabsf(U.pts[0].x) < fabsf(U.pts[4].x);
        for (int k = 0; k < 4; k++) {
            float t = 0.55f + 0.13f * k;
            int i = (int)(t * (m - 1));
            if (!inner_first) i = m - 1 - i;
            int i1 = i < m - 1 ? i + 1 : i, i0 = i > 0 ? i - 1 : i;
            avz__pt d = avz__sub(smp[i1], smp[i0]);
            float l = avz__len(d);
            if (l < 1e-6f) continue;
            avz__pt nrm = {d.y / l, -d.x / l};
            if (nrm.y > 0) nrm = avz__mul(nrm, -1.f);
            avz__pt out = {d.x / l, d.y / l};
            if ((out.x > 0) != (smp[m - 1].x - smp[0].x > 0) && inner_first) out = avz__mul(out, -1.f);
            avz__pt a = smp[i], b = avz__add(a, avz__add(avz__mul(nrm, lash), avz__mul(out, lash * 0.6f * (k + 1) / 4.f)));
            avz__pt pts[3] = {a, avz__lerp(a, b, 0.5f), b};
            pts[1] = avz__add(pts[1], avz__mul(out, lash * 0.15f));
            avz__tapered_outline(s, pts, 3, AVZ__TAPER, U.w1 * 0.45f, 0.0005f, 0, 2);
        }
        /* the lashes filled together: one fill operation instead of four (they
         * do not overlap one another, and they are opaque) */
        avz__fill(s, U.c, 1.f);
    }
}

static void avz__brow(avz_scene *s, const float *p, int off, int mid_idx, int hair_idx) {
    avz__feat B = avz__stroke_feat(p, off, 5);
    float wmid = p[mid_idx], hairy = p[hair_idx];
    avz__tapered(s, B.pts, 5, AVZ__BROW, B.w0, B.w1, wmid, B.c, 0.88f - 0.25f * hairy);
    if (hairy < 0.05f) return;
    /* composite: short hair strokes along the brow, slanted toward the tail */
    avz__pt smp[AVZ__MAXPTS];
    int m = avz__cr_sample(B.pts, 5, 0, 4, smp, AVZ__MAXPTS);
    int strokes = 9;
    avz__rgb dark = avz__shade(B.c, 0.75f);
    for (int k = 0; k < strokes; k++) {
        float u = (k + 0.5f) / strokes;
        int i = (int)(u * (m - 1));
        int i1 = i < m - 1 ? i + 1 : i, i0 = i > 0 ? i - 1 : i;
        avz__pt d = avz__sub(smp[i1], smp[i0]);
        float l = avz__len(d);
        if (l < 1e-6f) continue;
        avz__pt t = {d.x / l, d.y / l}, nrm = {-t.y, t.x};
        if (nrm.y > 0) nrm = avz__mul(nrm, -1.f); /* up */
        float w = avz__profile(AVZ__BROW, B.w0, B.w1, wmid, u);
        if (w < 0.004f) continue;
        avz__pt a = avz__add(smp[i], avz__mul(nrm, -0.45f * w));
        avz__pt b = avz__add(a, avz__add(avz__mul(nrm, 0.95f * w), avz__mul(t, 0.6f * w + 0.01f)));
        avz__pt pts[3] = {a, avz__add(avz__lerp(a, b, 0.5f), avz__mul(t, 0.004f)), b};
        avz__tapered_outline(s, pts, 3, AVZ__TAPER, 0.0045f + 0.05f * w, 0.0008f, 0, 2);
    }
    /* the hairs filled together: one fill operation instead of nine (they are
     * spaced along the brow and do not overlap one another) */
    avz__fill(s, dark, 0.6f * hairy + 0.2f);
}

static void avz__mouth(avz_scene *s, const float *p) {
    avz__feat UO = STROKE_F(LIP_UPPER_OUTER), LO = STROKE_F(LIP_LOWER_OUTER);
    avz__feat UI = STROKE_F(LIP_INNER_UPPER), LI = STROKE_F(LIP_INNER_LOWER);
    avz__pt r_ui[5], r_li[5], r_lo[5];
    for (int i = 0; i < 5; i++) { r_ui[i] = UI.pts[4 - i]; r_li[i] = LI.pts[4 - i]; r_lo[i] = LO.pts[4 - i]; }
    avz__rgb interior = avz__mix(avz__shade(UO.c, 0.35f), (avz__rgb){0.25f, 0.05f, 0.06f}, 0.5f);
    /* mouth interior and teeth */
    avz__cr_path(s, UI.pts, 5, 0, 1);
    avz__cr_path(s, r_li, 5, 0, 0);
    avz__close(s);
    avz__fill(s, interior, 1.f);
    if (p[AVZ_P_TEETH_SHOW] > 0.5f) {
        avz__cr_path(s, UI.pts, 5, 0, 1);
        avz__cr_path(s, r_li, 5, 0, 0);
        avz__close(s);
        avz__clip_push(s);
        avz__pt c = avz__lerp(UI.pts[0], UI.pts[4], 0.5f);
        float hw = fabsf(UI.pts[4].x - UI.pts[0].x) * 0.42f;
        float top = fminf(UI.pts[2].y, fminf(UI.pts[1].y, UI.pts[3].y));
        avz__rrect(s, (avz__pt){c.x, top + 0.02f}, hw, 0.03f, 0.02f);
        avz__fill(s, avz__frgb(p, AVZ_P_TEETH_R), 1.f);
        avz__clip_pop(s);
    }
    /* upper lip: outer curve, then the inner curve back */
    avz__cr_path(s, UO.pts, 7, 0, 1);
    avz__cr_path(s, r_ui, 5, 0, 0);
    avz__close(s);
    avz__fill(s, UO.c, 1.f);
    /* lower lip */
    avz__cr_path(s, LI.pts, 5, 0, 1);
    avz__cr_path(s, r_lo, 5, 0, 0);
    avz__close(s);
    avz__fill(s, LO.c, 1.f);
    /* a soft highlight on the lower lip */
    avz__pt hc = avz__lerp(LO.pts[2], LI.pts[2], 0.55f);
    float hw = fabsf(LO.pts[4].x - LO.pts[0].x) * 0.16f, hh = fabsf(LO.pts[2].y - LI.pts[2].y) * 0.18f;
    if (hh > 0.002f) {
        avz__ellipse(s, hc, hw, hh);
        avz__fill(s, (avz__rgb){1, 1, 1}, 0.22f);
    }
    /* outlines and the lip line */
    avz__tapered(s, UO.pts, 7, AVZ__BULGE, UO.w0 * 0.3f, UO.w1 + UO.w0 * 0.7f, 0, avz__shade(UO.c, 0.78f), 0.8f);
    avz__tapered(s, LO.pts, 5, AVZ__BULGE, LO.w0 * 0.3f, LO.w1 + LO.w0 * 0.7f, 0, avz__shade(LO.c, 0.8f), 0.6f);
    avz__tapered(s, UI.pts, 5, AVZ__BULGE, UI.w0, UI.w1, 0, UI.c, 1.f);
    avz__tapered(s, LI.pts, 5, AVZ__BULGE, LI.w0, LI.w1, 0, LI.c, 1.f);
}

static float avz__eye_center(const float *p, int up, float *y) {
    avz__pt a = avz__fpt(p, up, 0), b = avz__fpt(p, up, 4);
    *y = 0.5f * (a.y + b.y);
    return 0.5f * (a.x + b.x);
}

static void avz__glasses(avz_scene *s, const float *p) {
    int type = (int)lroundf(p[AVZ_P_GLASSES_TYPE]);
    if (type <= 0) return;
    float w = p[AVZ_P_GLASSES_LENS_W], h = p[AVZ_P_GLASSES_LENS_H], rnd = p[AVZ_P_GLASSES_ROUNDNESS];
    float fw = p[AVZ_P_GLASSES_FRAME_WIDTH], op = p[AVZ_P_GLASSES_LENS_OPACITY];
    avz__rgb fc = avz__frgb(p, AVZ_P_GLASSES_FRAME_R), lc = avz__frgb(p, AVZ_P_GLASSES_LENS_R);
    if (type == 2) op = fmaxf(op, 0.75f);
    float ly, ry, lx = avz__eye_center(p, AVZ_F_EYE_L_UPPER, &ly), rx = avz__eye_center(p, AVZ_F_EYE_R_UPPER, &ry);
    avz__pt cl = {lx, ly + 0.01f}, cr = {rx, ry + 0.01f};
    float rad = rnd * fminf(w, h);
    avz__rrect(s, cl, w, h, rad);
    avz__fill(s, lc, op);
    avz__rrect(s, cr, w, h, rad);
    avz__fill(s, lc, op);
    if (type == 2) { /* sunglasses: a glint */
        avz__pt g0 = {cl.x - w * 0.5f, cl.y - h * 0.45f}, g1 = {cr.x - w * 0.5f, cr.y - h * 0.45f};
        avz__ellipse(s, g0, w * 0.22f, h * 0.12f);
        avz__fill(s, (avz__rgb){1, 1, 1}, 0.25f);
        avz__ellipse(s, g1, w * 0.22f, h * 0.12f);
        avz__fill(s, (avz__rgb){1, 1, 1}, 0.25f);
    }
    avz__rrect(s, cl, w, h, rad);
    avz__stroke(s, fc, 1.f, fw);
    avz__rrect(s, cr, w, h, rad);
    avz__stroke(s, fc, 1.f, fw);
    /* bridge and temples */
    avz__pt bl = {cl.x + w, cl.y - h * 0.35f}, br = {cr.x - w, cr.y - h * 0.35f};
    avz__pt bm = avz__lerp(bl, br, 0.5f);
    bm.y -= 0.02f;
    avz__move(s, bl);
    avz__curve(s, avz__lerp(bl, bm, 0.6f), avz__lerp(br, bm, 0.6f), br);
    avz__stroke(s, fc, 1.f, fw);
    float fx_l = p[AVZ_F_FACE + 2 * 9], fx_r = p[AVZ_F_FACE + 2 * 5];
    avz__move(s, (avz__pt){cl.x - w, cl.y - h * 0.4f});
    avz__line(s, (avz__pt){fminf(fx_l + 0.02f, cl.x - w), cl.y - h * 0.55f});
    avz__stroke(s, fc, 1.f, fw);
    avz__move(s, (avz__pt){cr.x + w, cr.y - h * 0.4f});
    avz__line(s, (avz__pt){fmaxf(fx_r - 0.02f, cr.x + w), cr.y - h * 0.55f});
    avz__stroke(s, fc, 1.f, fw);
}

/* One half of a head scarf (type 4: a headscarf, hijab or hood that wraps
 * both sides of the face), a simple closed shape so that every back end fills
 * it without a hole: from the crown's top down the outer side (over the ear)
 * to the drape's foot, back to the mid-line, up under the chin and along the
 * face opening (inside the face outline below the band) to the band's middle.
 * side -1 is the image's left (face points 8..13), +1 its right (6..1); the
 * halves overlap by `ov` at the mid-line so no seam shows between them. */
static void avz__scarf_half(avz_scene *s, const float *p, float side, float cx, float ytop, float R,
                            float band, float drape, avz__rgb c) {
    const float ov = 0.006f;
    static const int left[6] = {8, 9, 10, 11, 12, 13}, right[6] = {6, 5, 4, 3, 2, 1};
    const int *ix = side < 0 ? left : right;
    avz__pt f[6];
    for (int k = 0; k < 6; k++) f[k] = avz__fpt(p, AVZ_F_FACE, ix[k]);
    avz__pt chin = avz__fpt(p, AVZ_F_FACE, 0);
    /* the opening starts below face point 8 (6): a band set higher (a scarf pushed back)
     * would open the cloth above the head, where no hair is drawn under it */
    band = fmaxf(band, f[0].y + 0.01f);
    float yt = f[1].y;                            /* the temple's height (face point 9 or 5) */
    float yb = chin.y + 0.12f + drape * 1.6f;     /* the drape's foot */
    float Wb = R * 0.92f + drape * 0.5f;
    float m = cx - side * ov;                     /* the mid-line, just past the centre */
    avz__move(s, (avz__pt){m, ytop});
    avz__curve(s, (avz__pt){cx + side * R * 0.55f, ytop}, (avz__pt){cx + side * R, yt - (yt - ytop) * 0.9f},
               (avz__pt){cx + side * R, yt});
    avz__curve(s, (avz__pt){cx + side * R, chin.y - 0.25f}, (avz__pt){cx + side * R * 0.9f, chin.y - 0.05f},
               (avz__pt){cx + side * Wb, yb - 0.06f});
    avz__curve(s, (avz__pt){cx + side * Wb * 0.7f, yb}, (avz__pt){cx + side * Wb * 0.3f, yb}, (avz__pt){m, yb});
    /* the face opening, from under the chin up to the band: the face outline's
     * points, drawn in a little at the cheeks and temples (the cloth frames the face) */
    avz__pt o[9];
    int n = 0;
    o[n++] = (avz__pt){m, chin.y + 0.012f};
    int last = 1;                                 /* the highest outline point kept */
    for (int k = 5; k >= 1; k--) {
        float inset = k >= 4 ? 0.02f : 0.035f;   /* less at the jaw, more at the cheeks and temples */
        o[n++] = (avz__pt){f[k].x - side * inset, f[k].y + (k == 5 ? 0.01f : 0.f)};
        last = k;
        if (f[k - 1].y < band) break;             /* the next point is above the band */
    }
    /* where the outline crosses the band: between the last point kept and its neighbour above */
    avz__pt lo = o[n - 1], hi = {f[last - 1].x - side * 0.035f, f[last - 1].y};
    float t = (hi.y < lo.y) ? (lo.y - band) / (lo.y - hi.y) : 1.f;
    avz__pt cross = avz__lerp(lo, hi, fminf(fmaxf(t, 0.f), 1.f));
    if (cross.y > band) cross.y = band;
    o[n++] = cross;
    o[n++] = (avz__pt){cx + (cross.x - cx) * 0.5f, band - 0.01f};
    o[n++] = (avz__pt){m, band - 0.012f};
    avz__line(s, o[0]);
    avz__cr_path(s, o, n, 0, 0);
    avz__close(s);
    avz__fill(s, c, 1.f);
    /* the opening's edge: a fold of the cloth */
    avz__cr_path(s, o + 1, n - 2, 0, 1);
    avz__stroke(s, avz__shade(c, 0.72f), 1.f, 0.012f);
    /* a fold down the side */
    avz__move(s, (avz__pt){cx + side * R * 0.86f, yt - 0.12f});
    avz__curve(s, (avz__pt){cx + side * R * 0.9f, yt + 0.15f}, (avz__pt){cx + side * R * 0.86f, chin.y - 0.2f},
               (avz__pt){cx + side * R * 0.8f, chin.y - 0.02f});
    avz__stroke(s, avz__shade(c, 0.82f), 0.8f, 0.007f);
}

/* Starts a path with a hat's dome: from the band's left end (cx - half) up over
 * the top (cx, ytop) to its right end; `rise` is how far up the sides' controls
 * reach (of band - ytop), `shoulder` where the top's controls lie (of half). */
static void avz__dome(avz_scene *s, float cx, float half, float band, float ytop, float rise, float shoulder) {
    avz__move(s, (avz__pt){cx - half, band});
    avz__curve(s, (avz__pt){cx - half, band - (band - ytop) * rise}, (avz__pt){cx - half * shoulder, ytop},
               (avz__pt){cx, ytop});
    avz__curve(s, (avz__pt){cx + half * shoulder, ytop}, (avz__pt){cx + half, band - (band - ytop) * rise},
               (avz__pt){cx + half, band});
}

static void avz__headwear(avz_scene *s, const float *p) {
    int type = (int)lroundf(p[AVZ_P_HEADWEAR_TYPE]);
    if (type <= 0) return;
    avz__rgb c = avz__frgb(p, AVZ_P_HEADWEAR_R);
    float band = p[AVZ_P_HEADWEAR_BAND_Y], crown = p[AVZ_P_HEADWEAR_CROWN];
    float wscale = p[AVZ_P_HEADWEAR_WIDTH], brim = p[AVZ_P_HEADWEAR_BRIM];
    float top = p[AVZ_F_FACE + 2 * 7 + 1];
    float cx = 0.5f * (p[AVZ_F_FACE + 2 * 5] + p[AVZ_F_FACE + 2 * 9]);
    float hw = 0.5f * fabsf(p[AVZ_F_FACE + 2 * 5] - p[AVZ_F_FACE + 2 * 9]) * wscale;
    float ytop = top - crown * (type == 3 ? 0.5f : 0.35f) - 0.06f;
    if (type == 4) { /* head scarf: its brim is the drape below the chin */
        float R = hw + 0.08f;
        avz__scarf_half(s, p, -1.f, cx, ytop, R, band, brim, c);
        avz__scarf_half(s, p, 1.f, cx, ytop, R, band, brim, c);
        avz__pt chin = avz__fpt(p, AVZ_F_FACE, 0);
        if (brim > 0.05f) { /* where the cloth passes under the chin */
            avz__move(s, (avz__pt){cx - hw * 0.55f, chin.y + 0.05f});
            avz__curve(s, (avz__pt){cx - hw * 0.2f, chin.y + 0.14f}, (avz__pt){cx + hw * 0.2f, chin.y + 0.14f},
                       (avz__pt){cx + hw * 0.55f, chin.y + 0.05f});
            avz__stroke(s, avz__shade(c, 0.8f), 0.8f, 0.008f);
        }
        return;
    }
    if (type == 5) { /* turban: a wrapped dome whose front edge dips to a point over the brows' middle */
        float ht = hw * 1.04f;
        avz__pt l = {cx - ht, band}, v = {cx, band + 0.045f};
        for (int pass = 0; pass < 2; pass++) { /* the dome filled, then as the clip of its folds */
            avz__dome(s, cx, ht, band, ytop, 0.95f, 0.6f);
            avz__curve(s, (avz__pt){cx + ht * 0.6f, band + 0.01f}, (avz__pt){cx + ht * 0.2f, band + 0.03f}, v);
            avz__curve(s, (avz__pt){cx - ht * 0.2f, band + 0.03f}, (avz__pt){cx - ht * 0.6f, band + 0.01f}, l);
            avz__close(s);
            if (pass == 0) avz__fill(s, c, 1.f);
        }
        avz__clip_push(s);
        /* the wraps: folds rising from the front point to either side, higher each layer */
        for (int k = 1; k <= 3; k++) {
            float ya = v.y - 0.035f * (float)k, yb = band - (band - ytop) * 0.22f * (float)k;
            for (int side = -1; side <= 1; side += 2) {
                avz__move(s, (avz__pt){cx, ya});
                avz__curve(s, (avz__pt){cx + side * ht * 0.4f, ya - 0.02f}, (avz__pt){cx + side * ht * 0.85f, yb + 0.05f},
                           (avz__pt){cx + side * ht * 1.05f, yb});
                avz__stroke(s, avz__shade(c, 0.72f), 1.f, 0.008f);
            }
        }
        avz__clip_pop(s);
        return;
    }
    if (type == 3) { /* brimmed hat: brim behind the crown's base */
        avz__ellipse(s, (avz__pt){cx, band}, hw + brim * 0.8f + 0.05f, 0.06f + brim * 0.12f);
        avz__fill(s, avz__shade(c, 0.85f), 1.f);
    }
    /* crown: a dome from the band line */
    avz__pt l = {cx - hw, band};
    avz__dome(s, cx, hw, band, ytop, 0.9f, 0.55f);
    avz__curve(s, (avz__pt){cx + hw * 0.5f, band + 0.03f}, (avz__pt){cx - hw * 0.5f, band + 0.03f}, l);
    avz__close(s);
    avz__fill(s, c, 1.f);
    if (type == 2) { /* beanie: folded cuff */
        avz__rrect(s, (avz__pt){cx, band + 0.01f}, hw * 1.02f, 0.065f, 0.04f);
        avz__fill(s, avz__shade(c, 0.82f), 1.f);
        for (int k = -4; k <= 4; k++) {
            avz__move(s, (avz__pt){cx + k * hw * 0.2f, band - 0.05f});
            avz__line(s, (avz__pt){cx + k * hw * 0.2f, band + 0.07f});
            avz__stroke(s, avz__shade(c, 0.7f), 0.6f, 0.006f);
        }
    } else if (type == 1) { /* cap: seam, button and a brim toward the viewer */
        avz__move(s, (avz__pt){cx, ytop});
        avz__curve(s, (avz__pt){cx - 0.02f, ytop + 0.1f}, (avz__pt){cx - 0.02f, band - 0.1f}, (avz__pt){cx, band});
        avz__stroke(s, avz__shade(c, 0.7f), 0.8f, 0.006f);
        avz__ellipse(s, (avz__pt){cx, ytop + 0.01f}, 0.025f, 0.014f);
        avz__fill(s, avz__shade(c, 0.8f), 1.f);
        avz__pt bl = {cx - hw * 0.92f, band}, br = {cx + hw * 0.92f, band};
        avz__move(s, bl);
        avz__curve(s, (avz__pt){cx - hw * 0.6f, band + 0.05f + brim * 0.25f}, (avz__pt){cx + hw * 0.6f, band + 0.05f + brim * 0.25f}, br);
        avz__curve(s, (avz__pt){cx + hw * 0.5f, band + 0.02f}, (avz__pt){cx - hw * 0.5f, band + 0.02f}, bl);
        avz__close(s);
        avz__fill(s, avz__shade(c, 0.78f), 1.f);
    } else { /* hat band */
        avz__rrect(s, (avz__pt){cx, band - 0.035f}, hw * 0.99f, 0.03f, 0.01f);
        avz__fill(s, avz__shade(c, 0.55f), 1.f);
    }
}

static void avz__build(avz_scene *s, const float *p) {
    s->n_items = s->n_path = s->path_start = 0;
    s->oom = 0;
    avz__feat face = STROKE_F(FACE);
    avz__rgb skin = face.c;
    int layers = (int)lroundf(p[AVZ_P_HAIR_STYLE_LAYERS]); /* 0 none, 1 back, 2 back + front */
    int hat = (int)lroundf(p[AVZ_P_HEADWEAR_TYPE]);
    int scarf = hat == 4; /* a head scarf covers the hair and the ears, a turban (5) all the hair */
    if (scarf || hat == 5) layers = 0;
    float curl = p[AVZ_P_HAIR_STYLE_CURL];
    avz__feat hb = STROKE_F(HAIR_BACK), hf = STROKE_F(HAIR_FRONT);

    /* 1. back hair */
    if (layers >= 1) {
        avz__contour(s, hb.pts, hb.n, curl);
        avz__fill(s, hb.c, 1.f);
        if (hb.w0 > 0) {
            avz__contour(s, hb.pts, hb.n, curl);
            avz__stroke(s, avz__shade(hb.c, 0.7f), 1.f, hb.w0);
        }
    }
    /* 2. neck and its shadow, clothes */
    avz__feat neck = SHAPE_F(NECK);
    avz__shape(s, &neck);
    avz__cr_path(s, neck.pts, neck.n, 1, 1);
    avz__clip_push(s);
    avz__feat nsh = SHAPE_F(NECK_SHADOW);
    avz__shape(s, &nsh);
    avz__clip_pop(s);
    avz__feat cl = STROKE_F(CLOTHES);
    avz__cr_path(s, cl.pts, cl.n, 0, 1);
    avz__line(s, (avz__pt){cl.pts[cl.n - 1].x, 3.f});
    avz__line(s, (avz__pt){cl.pts[0].x, 3.f});
    avz__close(s);
    avz__fill(s, cl.c, 1.f);
    avz__cr_path(s, cl.pts, cl.n, 0, 1);
    avz__stroke(s, avz__shade(cl.c, 0.7f), 1.f, cl.w0);
    /* 3. ears, head */
    avz__feat el = STROKE_F(EAR_L), er = STROKE_F(EAR_R);
    if (!scarf) {
        avz__ear(s, &el);
        avz__ear(s, &er);
    }
    avz__cr_path(s, face.pts, face.n, 1, 1);
    avz__fill(s, skin, 1.f);
    /* 4. shading inside the face */
    avz__cr_path(s, face.pts, face.n, 1, 1);
    avz__clip_push(s);
    {
        avz__feat f1 = SHAPE_F(CHEEK_SHADOW_L), f2 = SHAPE_F(CHEEK_SHADOW_R), f3 = SHAPE_F(NOSE_SHADOW);
        avz__shape(s, &f1); avz__shape(s, &f2); avz__shape(s, &f3);
        int blush[2] = {AVZ_P_BLUSH_L_CX, AVZ_P_BLUSH_R_CX};
        for (int k = 0; k < 2; k++) {
            const float *b = p + blush[k];
            if (b[4] <= 0.002f) continue;
            avz__ellipse(s, (avz__pt){b[0], b[1]}, b[2], b[3]);
            avz__fill(s, (avz__rgb){b[5], b[6], b[7]}, b[4]);
        }
        avz__feat h1 = SHAPE_F(FOREHEAD_HIGHLIGHT), h2 = SHAPE_F(CHEEK_HIGHLIGHT_L), h3 = SHAPE_F(CHEEK_HIGHLIGHT_R),
                  h4 = SHAPE_F(NOSE_HIGHLIGHT);
        avz__shape(s, &h1); avz__shape(s, &h2); avz__shape(s, &h3); avz__shape(s, &h4);
        avz__feat w1 = STROKE_F(NASOLABIAL_L), w2 = STROKE_F(NASOLABIAL_R);
        avz__stroke_f(s, &w1, AVZ__TAPER);
        avz__stroke_f(s, &w2, AVZ__TAPER);
        avz__feat w3 = STROKE_F(FOREHEAD_LINE), w4 = STROKE_F(UNDEREYE_L), w5 = STROKE_F(UNDEREYE_R);
        avz__stroke_f(s, &w3, AVZ__BULGE);
        avz__stroke_f(s, &w4, AVZ__BULGE);
        avz__stroke_f(s, &w5, AVZ__BULGE);
    }
    avz__clip_pop(s);
    /* head outline */
    avz__cr_path(s, face.pts, face.n, 1, 1);
    avz__stroke(s, avz__shade(skin, 0.72f), 1.f, face.w0);
    /* 5. beard under the mouth and nose */
    avz__feat beard = SHAPE_F(BEARD);
    if (beard.opacity > 0.002f) {
        avz__contour(s, beard.pts, beard.n, 0.25f + 0.5f * curl);
        avz__fill(s, beard.c, beard.opacity);
    }
    /* 6. eyes and brows */
    avz__rgb sclera = avz__frgb(p, AVZ_P_SCLERA_R);
    avz__eye(s, p, AVZ_F_EYE_L_UPPER, AVZ_F_EYE_L_LOWER, AVZ_F_EYE_L_CREASE, AVZ_P_IRIS_L_CX,
             p[AVZ_P_LASHES_L_LENGTH], sclera);
    avz__eye(s, p, AVZ_F_EYE_R_UPPER, AVZ_F_EYE_R_LOWER, AVZ_F_EYE_R_CREASE, AVZ_P_IRIS_R_CX,
             p[AVZ_P_LASHES_R_LENGTH], sclera);
    avz__brow(s, p, AVZ_F_BROW_L, AVZ_P_BROW_L_MID_WIDTH, AVZ_P_BROW_L_HAIRINESS);
    avz__brow(s, p, AVZ_F_BROW_R, AVZ_P_BROW_R_MID_WIDTH, AVZ_P_BROW_R_HAIRINESS);
    /* 7. nose */
    avz__feat nb = STROKE_F(NOSE_BRIDGE), nbase = STROKE_F(NOSE_BASE);
    avz__feat nl = STROKE_F(NOSTRIL_L), nr = STROKE_F(NOSTRIL_R);
    avz__stroke_f(s, &nb, AVZ__TAPER);
    avz__stroke_f(s, &nl, AVZ__TAPER);
    avz__stroke_f(s, &nr, AVZ__TAPER);
    avz__tapered(s, nbase.pts, nbase.n, AVZ__BULGE, nbase.w0 * 0.4f, nbase.w0 + nbase.w1, 0, nbase.c, 1.f);
    /* 8. mouth, moustache */
    avz__mouth(s, p);
    avz__feat mo = STROKE_F(MOUSTACHE);
    avz__tapered(s, mo.pts, mo.n, AVZ__BULGE, mo.w0, mo.w1, 0, mo.c, 0.95f);
    /* 9. front hair, its parting and strands */
    if (layers >= 2) {
        avz__contour(s, hf.pts, hf.n, curl);
        avz__fill(s, hf.c, 1.f);
        float part = p[AVZ_P_HAIR_STYLE_PART_X];
        if (fabsf(part) > 0.02f) {
            avz__contour(s, hf.pts, hf.n, curl);
            avz__clip_push(s);
            avz__pt a = {part, hf.pts[0].y + 0.02f}, b = {part * 1.25f, hf.pts[hf.n / 2].y};
            avz__pt pts[3] = {a, avz__lerp(a, b, 0.5f), b};
            pts[1].x += 0.03f * (part > 0 ? 1.f : -1.f);
            avz__tapered(s, pts, 3, AVZ__TAPER, 0.012f, 0.002f, 0, avz__shade(hf.c, 0.6f), 0.9f);
            avz__clip_pop(s);
        }
        if (hf.w0 > 0) {
            avz__contour(s, hf.pts, hf.n, curl);
            avz__stroke(s, avz__shade(hf.c, 0.7f), 1.f, hf.w0);
        }
        avz__feat s0 = STROKE_F(HAIR_STRAND0), s1 = STROKE_F(HAIR_STRAND1);
        avz__stroke_f(s, &s0, AVZ__BULGE);
        avz__stroke_f(s, &s1, AVZ__BULGE);
    }
    /* 10. headwear, glasses */
    avz__headwear(s, p);
    avz__glasses(s, p);
}

avz_status avz_scene_build(avz_scene *s, const float *params, size_t n) {
    if (!s) return AVZ_E_NULL;
    avz_status st = avz_validate(params, n, s->error, sizeof s->error);
    if (st != AVZ_OK) {
        /* a failed build leaves the scene empty (the last avatar's shapes were still read as this one's) */
        s->n_items = s->n_path = s->path_start = 0;
        return st;
    }
    avz__build(s, params);
    if (s->oom) {
        snprintf(s->error, sizeof s->error, "out of memory while building the scene");
        s->n_items = s->n_path = s->path_start = 0;
        return AVZ_E_NOMEM;
    }
    return AVZ_OK;
}

avz_status avz_scene_items(const avz_scene *s, const avz_item **items, size_t *count) {
    if (!s || !items || !count) return AVZ_E_NULL;
    *items = s->items;
    *count = s->n_items;
    return AVZ_OK;
}

avz_status avz_scene_path(const avz_scene *s, const float **data, size_t *count) {
    if (!s || !data || !count) return AVZ_E_NULL;
    *data = s->path;
    *count = s->n_path;
    return AVZ_OK;
}

/* --------------------------------------------------------------- renderer */

struct avz_renderer {
    avz_scene *scene;
    int threads;      /* avz_renderer_set_threads: threads drawing one image (bands of rows) */
    struct avz__pool *pool; /* the helper threads of those bands, started on first use */
    uint8_t *scratch; /* avz_overlay's premultiplied ARGB32 image, kept between calls */
    size_t scratch_cap;
    unsigned char *vec;
    size_t vec_len, vec_cap;
    int vec_oom;
    char error[256];
};

static void avz__pool_stop(avz_renderer *r);

void avz_render_options_init(avz_render_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->zoom = 1.0;
}

avz_status avz_renderer_create(avz_renderer **out) {
    if (!out) return AVZ_E_NULL;
    *out = NULL;
    avz_renderer *r = calloc(1, sizeof *r);
    if (!r) return AVZ_E_NOMEM;
    if (avz_scene_create(&r->scene) != AVZ_OK) { free(r); return AVZ_E_NOMEM; }
    r->threads = 1;
    *out = r;
    return AVZ_OK;
}

void avz_renderer_destroy(avz_renderer *r) {
    if (!r) return;
    avz__pool_stop(r);
    avz_scene_destroy(r->scene);
    free(r->scratch);
    free(r->vec);
    free(r);
}

const char *avz_renderer_error(const avz_renderer *r) { return r ? r->error : "renderer is NULL"; }

avz_status avz_renderer_set_threads(avz_renderer *r, int threads) {
    if (!r) return AVZ_E_NULL;
    r->error[0] = 0;
    if (threads < 1 || threads > AVZ_MAX_THREADS) {
        snprintf(r->error, sizeof r->error, "threads must be in 1..%d, got %d", AVZ_MAX_THREADS, threads);
        return AVZ_E_ARG;
    }
    r->threads = threads; /* helpers already started stay; those beyond threads - 1 take no band */
    return AVZ_OK;
}

int avz_renderer_threads(const avz_renderer *r) { return r ? r->threads : 0; }

static avz_status avz__fail(avz_renderer *r, avz_status st, const char *msg) {
    snprintf(r->error, sizeof r->error, "%s", msg);
    return st;
}

static void avz__draw_path(cairo_t *cr, const float *d, uint32_t a, uint32_t b) {
    cairo_new_path(cr);
    uint32_t i = a;
    while (i < b) {
        int op = (int)d[i];
        switch (op) {
        case AVZ_OP_MOVE: cairo_move_to(cr, d[i + 1], d[i + 2]); i += 3; break;
        case AVZ_OP_LINE: cairo_line_to(cr, d[i + 1], d[i + 2]); i += 3; break;
        case AVZ_OP_CURVE:
            cairo_curve_to(cr, d[i + 1], d[i + 2], d[i + 3], d[i + 4], d[i + 5], d[i + 6]);
            i += 7;
            break;
        default: cairo_close_path(cr); i += 1; break;
        }
    }
}

/* One scene item; `depth` counts the open clip groups. */
static inline void avz__draw_item(cairo_t *cr, const avz_scene *s, const avz_item *it, int *depth) {
    switch (it->kind) {
    case AVZ_ITEM_FILL:
        avz__draw_path(cr, s->path, it->path_begin, it->path_end);
        cairo_set_source_rgba(cr, it->rgba[0], it->rgba[1], it->rgba[2], it->rgba[3]);
        cairo_fill(cr);
        break;
    case AVZ_ITEM_STROKE:
        avz__draw_path(cr, s->path, it->path_begin, it->path_end);
        cairo_set_source_rgba(cr, it->rgba[0], it->rgba[1], it->rgba[2], it->rgba[3]);
        cairo_set_line_width(cr, it->width);
        cairo_stroke(cr);
        break;
    case AVZ_ITEM_CLIP_PUSH:
        cairo_save(cr);
        (*depth)++;
        avz__draw_path(cr, s->path, it->path_begin, it->path_end);
        cairo_clip(cr);
        break;
    case AVZ_ITEM_CLIP_POP:
        if (*depth > 0) { cairo_restore(cr); (*depth)--; }
        break;
    }
}

static void avz__draw_scene(cairo_t *cr, const avz_scene *s) {
    int depth = 0;
    for (size_t k = 0; k < s->n_items; k++)
        avz__draw_item(cr, s, &s->items[k], &depth);
    while (depth-- > 0) cairo_restore(cr);
}

/* cairo keeps device coordinates in 24.8 fixed point (about +-8.4 million):
 * with scene coordinates within +-3 frame units, coefficients up to 1e6 stay
 * inside it; beyond, points wrap around and the picture is garbage. */
#define AVZ__MAX_TRANSFORM 1e6
#define AVZ__MIN_ZOOM 1e-6 /* below, cairo refuses the matrix (a zoom of 1e-6 is already a sub-pixel avatar) */

/* Vector output strokes each outline in the page's own coordinates, where cairo's stroker grows with how
 * unevenly the transform stretches (the ratio of its 2x2 part's singular values): ~1e8 took 0.01 s,
 * 1e10 0.04-0.16 s and 97 MiB, 1e14 7 s and 2.8 GiB (raster output clips first and stays under 1 ms).
 * Vector output takes a^2 + b^2 + c^2 + d^2 <= AVZ__MAX_VECTOR_STRETCH * |ad - bc| (which bounds that
 * ratio by the same number): an avatar squashed flatter than that is a line. */
#define AVZ__MAX_VECTOR_STRETCH 1e8

static avz_status avz__check_transform(avz_renderer *r, const double *t) {
    for (int i = 0; i < 6; i++)
        if (!isfinite(t[i]) || fabs(t[i]) > AVZ__MAX_TRANSFORM)
            return avz__fail(r, AVZ_E_ARG, "transform must be finite, with coefficients within +-1e6");
    double det = t[0] * t[3] - t[1] * t[2];
    if (fabs(det) < 1e-12) return avz__fail(r, AVZ_E_ARG, "transform is not invertible (|ad - bc| below 1e-12)");
    return AVZ_OK;
}

static avz_status avz__check_opts(avz_renderer *r, const avz_render_options *o, double w, double h) {
    for (int i = 0; i < 4; i++)
        if (!isfinite(o->background[i]) || o->background[i] < 0.f || o->background[i] > 1.f)
            return avz__fail(r, AVZ_E_ARG, "background channels must be finite values in [0, 1]");
    if (o->use_transform) {
        avz_status st = avz__check_transform(r, o->transform);
        if (st != AVZ_OK) return st;
    } else if (!isfinite(o->zoom) || o->zoom < AVZ__MIN_ZOOM || o->zoom > 1000.0) {
        return avz__fail(r, AVZ_E_ARG, "zoom must be in [1e-6, 1000]");
    } else if (0.5 * (w < h ? w : h) * o->zoom > AVZ__MAX_TRANSFORM) {
        /* the fitted scale is a transform coefficient too: beyond 1e6 cairo's coordinates wrap */
        return avz__fail(r, AVZ_E_ARG, "zoom times half the shorter side must be at most 1e6 pixels per frame unit");
    }
    if (o->antialias != AVZ_AA_BEST && o->antialias != AVZ_AA_FAST)
        return avz__fail(r, AVZ_E_ARG, "antialias must be AVZ_AA_BEST or AVZ_AA_FAST");
    return AVZ_OK;
}

/* Sets the frame -> output transform and paints the background. */
static void avz__setup(cairo_t *cr, double w, double h, const avz_render_options *o) {
    cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
    cairo_set_source_rgba(cr, o->background[0], o->background[1], o->background[2], o->background[3]);
    cairo_paint(cr);
    cairo_set_operator(cr, CAIRO_OPERATOR_OVER);
    if (o->use_transform) {
        cairo_matrix_t m;
        cairo_matrix_init(&m, o->transform[0], o->transform[1], o->transform[2], o->transform[3],
                          o->transform[4], o->transform[5]);
        cairo_transform(cr, &m);
    } else {
        double sc = 0.5 * (w < h ? w : h) * o->zoom;
        cairo_translate(cr, 0.5 * w, 0.5 * h);
        cairo_scale(cr, sc, sc);
    }
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_fill_rule(cr, CAIRO_FILL_RULE_WINDING);
    cairo_set_antialias(cr, o->antialias == AVZ_AA_FAST ? CAIRO_ANTIALIAS_FAST : CAIRO_ANTIALIAS_DEFAULT);
    /* curves are flattened to within a quarter pixel (cairo's default is 0.1):
     * invisible, and ~15% faster at 512 px */
    cairo_set_tolerance(cr, AVZ__TOLERANCE);
}

static uint8_t avz__unprem[256][256]; /* [alpha][premultiplied channel] */
static pthread_once_t avz__unprem_once = PTHREAD_ONCE_INIT;

/* Filled exactly once, whichever renderer on whichever thread draws first
 * (pthread_once orders the writes before every reader: no data race). */
static void avz__unprem_fill(void) {
    for (int c = 0; c < 256; c++) avz__unprem[0][c] = (uint8_t)c; /* alpha 0: channels are 0, kept */
    for (int a = 1; a < 256; a++) /* (alpha 255 maps each channel to itself) */
        for (int c = 0; c < 256; c++) {
            int v = (c * 255 + a / 2) / a;
            avz__unprem[a][c] = (uint8_t)(v > 255 ? 255 : v);
        }
}

static void avz__unprem_init(void) { pthread_once(&avz__unprem_once, avz__unprem_fill); }

/* One pixel: cairo's native-endian premultiplied ARGB32 word -> R G B A bytes
 * (still premultiplied); sets *translucent when its alpha is neither 0 nor 255. */
static inline uint32_t avz__to_rgba(uint32_t v, uint32_t *translucent) {
    *translucent |= ((v >> 24) - 1u) < 254u ? 1u : 0u;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (v << 8) | (v >> 24); /* A R G B bytes -> R G B A */
#else
    return (v & 0xFF00FF00u) | ((v >> 16) & 0xFFu) | ((v & 0xFFu) << 16); /* B G R A -> R G B A */
#endif
}

/* Straight colour through the table; rows 0 and 255 of the table leave a
 * channel as it is (a premultiplied channel is 0 where alpha is 0), so no
 * branch on alpha. */
static inline void avz__unprem_px(uint8_t *px) {
    const uint8_t *t = avz__unprem[px[3]];
    px[0] = t[px[0]];
    px[1] = t[px[1]];
    px[2] = t[px[2]];
}

#define AVZ__UNPREM_BLOCK 16
/* Cairo's native-endian premultiplied ARGB32 -> straight RGBA bytes, in place,
 * in blocks of 16 pixels: the reorder of a block is a branch-free loop the
 * compiler vectorises (build with -ftree-vectorize under GCC, as
 * bindings/build_avz.py does) and notes whether any of its pixels is
 * translucent; only such blocks (an avatar's edges: an opaque or transparent
 * background has none) are un-premultiplied, through the table. */
static void avz__unpremultiply(uint8_t *rgba, int w, int h, int stride) {
    avz__unprem_init();
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgba + (size_t)y * stride;
        int x = 0;
        for (; x + AVZ__UNPREM_BLOCK <= w; x += AVZ__UNPREM_BLOCK) {
            uint8_t *blk = row + 4 * (size_t)x;
            uint32_t translucent = 0;
            for (int i = 0; i < AVZ__UNPREM_BLOCK; i++) {
                uint32_t v;
                memcpy(&v, blk + 4 * i, 4);
                v = avz__to_rgba(v, &translucent);
                memcpy(blk + 4 * i, &v, 4);
            }
            if (translucent)
                for (int i = 0; i < AVZ__UNPREM_BLOCK; i++) avz__unprem_px(blk + 4 * i);
        }
        for (; x < w; x++) { /* the row's last w % 16 pixels */
            uint8_t *px = row + 4 * (size_t)x;
            uint32_t v, translucent = 0;
            memcpy(&v, px, 4);
            v = avz__to_rgba(v, &translucent);
            memcpy(px, &v, 4);
            if (translucent) avz__unprem_px(px);
        }
    }
}

/* One band of rows [y0, y1) of a width x height image whose first byte is
 * `buf`: drawn premultiplied (a surface over the band's rows, the whole
 * image's transform shifted up by y0, so every pixel comes out as a render of
 * the whole image draws it), then `post` (un-premultiply, or the overlay's
 * blend) on the same rows. Bands of one image share the read-only scene. */
typedef struct avz__band {
    const avz_scene *scene;
    const avz_render_options *opt;
    uint8_t *buf;
    int width, height, stride, y0, y1;
    void (*post)(const struct avz__band *band, void *ctx);
    void *ctx;
    cairo_status_t status;
} avz__band;

static void avz__band_draw(avz__band *b) {
    /* cairo and pixman find a row as data + y * stride computed in int (cairo's
     * span fillers in bytes, pixman in 32-bit words), so on a surface whose
     * stride * rows passes INT_MAX the rows past it were written at a wrapped
     * offset (a stride of 2^30 and 9 rows: SIGSEGV). A legal stride is any
     * multiple of 4 up to INT_MAX, so the band is drawn as surfaces of at most
     * INT_MAX / stride rows (at least one), each starting at its own first row
     * (offset in size_t): rows however far apart are all drawn. Only such
     * strides cut a band; fast antialiasing cut there differs along vertical
     * edges as bands would (up to 76 levels seen at a stride of 2^30; see
     * avz__draw_premultiplied and avz.h). */
    const int most = INT_MAX / b->stride;
    b->status = CAIRO_STATUS_SUCCESS;
    for (int y0 = b->y0; y0 < b->y1 && b->status == CAIRO_STATUS_SUCCESS;) {
        const int rows = b->y1 - y0 < most ? b->y1 - y0 : most;
        cairo_surface_t *surf = cairo_image_surface_create_for_data(b->buf + (size_t)y0 * b->stride,
                                                                    CAIRO_FORMAT_ARGB32, b->width, rows, b->stride);
        b->status = cairo_surface_status(surf);
        if (b->status == CAIRO_STATUS_SUCCESS) {
            cairo_t *cr = cairo_create(surf);
            if (y0) cairo_translate(cr, 0, -y0);
            avz__setup(cr, b->width, b->height, b->opt);
            avz__draw_scene(cr, b->scene);
            b->status = cairo_status(cr);
            cairo_destroy(cr);
            cairo_surface_flush(surf);
        }
        cairo_surface_destroy(surf);
        y0 += rows;
    }
    if (b->status == CAIRO_STATUS_SUCCESS && b->post) b->post(b, b->ctx);
}

/* The renderer's helper threads: they wait for the bands of each image and
 * take them one at a time, as the calling thread does once its first band is
 * drawn, so a helper that wakes late (its core busy) delays nothing: the
 * calling thread draws the bands nobody has taken. Threads kept between calls
 * keep cairo's and pixman's per-thread caches warm (a fresh thread per call
 * cost ~0.5 ms more CPU per 256 px image). Started by the first banded call,
 * joined by destroy; a child process after fork() starts its own. */
typedef struct avz__pool avz__pool;
typedef struct avz__helper { avz__pool *pool; int k; } avz__helper;

struct avz__pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t tid[AVZ_MAX_THREADS];
    avz__helper helper[AVZ_MAX_THREADS];
    int n;                 /* helper threads started */
    int wanted;            /* helper threads asked for when the pool started (n < wanted: some failed) */
    int active;            /* helpers 0..active-1 may take this image's bands (the renderer's threads - 1) */
    unsigned long gen;     /* incremented per image */
    avz__band *bands;      /* this image's bands */
    int nbands, next;      /* bands[next..nbands) are not taken yet */
    int running;           /* bands taken by helpers and not finished */
    int quit;
    pid_t pid;
};

/* Takes and draws bands until none is left; called and returns with p->mu held. */
static void avz__pool_take(avz__pool *p, int helper) {
    while (p->next < p->nbands) {
        avz__band *b = &p->bands[p->next++];
        p->running += helper;
        pthread_mutex_unlock(&p->mu);
        avz__band_draw(b);
        pthread_mutex_lock(&p->mu);
        if (helper && --p->running == 0) pthread_cond_signal(&p->done);
    }
}

static void *avz__pool_main(void *arg) {
    avz__pool *p = ((avz__helper *)arg)->pool;
    const int k = ((avz__helper *)arg)->k;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->gen == seen) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        if (k < p->active) avz__pool_take(p, 1); /* a helper beyond a lowered thread count stays idle */
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void avz__pool_stop(avz_renderer *r) {
    avz__pool *p = r->pool;
    if (!p) return;
    r->pool = NULL;
    if (p->pid == getpid()) {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        for (int k = 0; k < p->n; k++) pthread_join(p->tid[k], NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->go);
        pthread_cond_destroy(&p->done);
    } /* else: forked child: the parent's threads do not exist here; the memory is all that is left */
    free(p);
}

/* The pool with `helpers` threads, started if needed; NULL if none could
 * start. A pool that once asked for at least as many is kept (with the
 * helpers that did start: a thread limit is not retried on every call). */
static avz__pool *avz__pool_get(avz_renderer *r, int helpers) {
    if (r->pool && (r->pool->pid != getpid() || r->pool->wanted < helpers)) avz__pool_stop(r);
    if (r->pool) return r->pool;
    avz__pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->pid = getpid();
    p->wanted = helpers;
    if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
    if (pthread_cond_init(&p->go, NULL) != 0) { pthread_mutex_destroy(&p->mu); free(p); return NULL; }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    for (int k = 0; k < helpers; k++) {
        p->helper[p->n] = (avz__helper){p, p->n};
        if (pthread_create(&p->tid[p->n], NULL, avz__pool_main, &p->helper[p->n]) != 0) break;
        p->n++;
    }
    r->pool = p;
    if (p->n == 0) { avz__pool_stop(r); return NULL; }
    return p;
}

/* Draws the built scene into a premultiplied native-endian ARGB32 buffer and
 * runs `post` on it, in bands of rows on up to r->threads threads (the
 * calling one and the pool's helpers; without helpers, all on this thread). */
static avz_status avz__draw_premultiplied(avz_renderer *r, uint8_t *buf, int width, int height, int stride,
                                          const avz_render_options *options,
                                          void (*post)(const avz__band *, void *), void *ctx) {
    /* one band more than threads: whichever thread finishes first takes the
     * last band, so a helper that starts late (its core busy with other work)
     * or a band full of shapes costs less waiting. On avatars of real faces,
     * 256 px, 2 threads in a video loop, 3 bands took p50 1.72-1.74 ms against
     * 1.71-1.94 for 2 bands and 2.39-2.42 on one thread; in an overlay loop
     * beside OpenCV's own thread pool 3 bands were 1.45-1.48x faster than one
     * thread where 2 bands were 0.86-1.19x (docs/render_profile.md). Equal
     * bands: a cut where the shapes crossing the rows balance fell within a
     * few rows of the middle of two bands and was no faster. */
    int n = r->threads > 1 ? r->threads + 1 : 1;
    /* cairo's fast (4x4) scan converter steps over runs of rows where no edge
     * starts or ends, so a band's bottom row changes the coverage of a
     * vertical edge for rows above it (up to 60 levels seen): fast
     * antialiasing is drawn whole, on the calling thread */
    if (options->antialias == AVZ_AA_FAST) n = 1;
    if (n > height / AVZ__MIN_BAND_ROWS) n = height / AVZ__MIN_BAND_ROWS;
    if (n < 1) n = 1;
    avz__band bands[AVZ_MAX_THREADS + 1];
    for (int k = 0; k < n; k++)
        bands[k] = (avz__band){r->scene, options, buf, width, height, stride, height * k / n,
                               height * (k + 1) / n, post, ctx, CAIRO_STATUS_SUCCESS};
    avz__pool *p = n > 1 ? avz__pool_get(r, r->threads - 1) : NULL;
    if (!p) {
        for (int k = 0; k < n; k++) avz__band_draw(&bands[k]);
    } else {
        pthread_mutex_lock(&p->mu);
        p->bands = bands;
        p->nbands = n;
        p->next = 1; /* band 0 is this thread's */
        p->running = 0;
        p->active = r->threads - 1;
        p->gen++;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        avz__band_draw(&bands[0]);
        pthread_mutex_lock(&p->mu);
        avz__pool_take(p, 0);
        while (p->running > 0) pthread_cond_wait(&p->done, &p->mu);
        p->bands = NULL;
        p->nbands = p->next = 0;
        pthread_mutex_unlock(&p->mu);
    }
    for (int k = 0; k < n; k++)
        if (bands[k].status != CAIRO_STATUS_SUCCESS)
            return avz__fail(r, AVZ_E_CAIRO, cairo_status_to_string(bands[k].status));
    return AVZ_OK;
}

static void avz__unpremultiply_band(const avz__band *b, void *ctx) {
    (void)ctx;
    avz__unpremultiply(b->buf + (size_t)b->y0 * b->stride, b->width, b->y1 - b->y0, b->stride);
}

avz_status avz_render(avz_renderer *r, const float *params, size_t n, uint8_t *rgba, int width,
                      int height, int stride, const avz_render_options *options) {
    if (!r) return AVZ_E_NULL;
    r->error[0] = 0;
    if (!rgba) return avz__fail(r, AVZ_E_NULL, "rgba buffer is NULL");
    if (width < 1 || height < 1 || width > AVZ_MAX_SIZE || height > AVZ_MAX_SIZE) {
        snprintf(r->error, sizeof r->error, "size %dx%d is outside 1..%d", width, height, AVZ_MAX_SIZE);
        return AVZ_E_SIZE;
    }
    if (stride < 4 * width || stride % 4 != 0) {
        snprintf(r->error, sizeof r->error, "stride %d must be a multiple of 4 and >= 4 * width (%d)",
                 stride, 4 * width);
        return AVZ_E_STRIDE;
    }
    if ((uintptr_t)rgba % 4 != 0) /* cairo draws 32-bit pixels: elsewhere the picture comes out wrong */
        return avz__fail(r, AVZ_E_ARG, "rgba buffer must be 4-byte aligned");
    avz_render_options def;
    if (!options) { avz_render_options_init(&def); options = &def; }
    avz_status st = avz__check_opts(r, options, width, height);
    if (st != AVZ_OK) return st;
    st = avz_scene_build(r->scene, params, n);
    if (st != AVZ_OK) return avz__fail(r, st, r->scene->error);

    return avz__draw_premultiplied(r, rgba, width, height, stride, options, avz__unpremultiply_band, NULL);
}

/* ---------------------------------------------------------------- overlay */

void avz_overlay_options_init(avz_overlay_options *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->transform[0] = o->transform[3] = 1.0;
    o->box[2] = o->box[3] = AVZ_MAX_SIZE;
    o->opacity = 1.f;
    o->fade_width = 1.f;
}

static avz_status avz__check_overlay(avz_renderer *r, const avz_overlay_options *o) {
    avz_status st = avz__check_transform(r, o->transform);
    if (st != AVZ_OK) return st;
    if (!(o->opacity >= 0.f && o->opacity <= 1.f)) return avz__fail(r, AVZ_E_ARG, "opacity must be in [0, 1]");
    if (o->order != AVZ_ORDER_RGB && o->order != AVZ_ORDER_BGR)
        return avz__fail(r, AVZ_E_ARG, "order must be AVZ_ORDER_RGB or AVZ_ORDER_BGR");
    if (o->use_fade != 0 && o->use_fade != 1) return avz__fail(r, AVZ_E_ARG, "use_fade must be 0 or 1");
    if (o->use_fade && !(isfinite(o->fade_end) && isfinite(o->fade_width) && o->fade_width > 0.f))
        return avz__fail(r, AVZ_E_ARG, "fade_end must be finite and fade_width finite and > 0");
    if (o->antialias != AVZ_AA_BEST && o->antialias != AVZ_AA_FAST)
        return avz__fail(r, AVZ_E_ARG, "antialias must be AVZ_AA_BEST or AVZ_AA_FAST");
    return AVZ_OK;
}

/* The frame-pixel box {x0, y0, x1, y1} that holds all the scene draws through
 * transform t ({a, b, c, d, e, f}): the bounds of every path point (a Bezier
 * stays inside its control points' hull), grown by the widest stroke's half
 * width, cut at frame y = ylim (below, an overlay's fade hides the avatar),
 * through t, grown by a pixel. Returns 0 when nothing is drawn. */
static int avz__scene_box(const avz_scene *s, const double *t, float ylim, int *box) {
    float x0 = INFINITY, y0 = INFINITY, x1 = -INFINITY, y1 = -INFINITY, hw = 0.f;
    for (size_t k = 0; k < s->n_items; k++) {
        const avz_item *it = &s->items[k];
        if (it->kind == AVZ_ITEM_STROKE && 0.5f * it->width > hw) hw = 0.5f * it->width;
        for (uint32_t i = it->path_begin; i < it->path_end;) {
            int op = (int)s->path[i], pts = op == AVZ_OP_CURVE ? 3 : op == AVZ_OP_CLOSE ? 0 : 1;
            for (int j = 0; j < pts; j++) {
                float x = s->path[i + 1 + 2 * j], y = s->path[i + 2 + 2 * j];
                x0 = fminf(x0, x); x1 = fmaxf(x1, x);
                y0 = fminf(y0, y); y1 = fmaxf(y1, y);
            }
            i += 1 + 2 * (uint32_t)pts;
        }
    }
    if (!(x0 <= x1)) return 0;
    x0 -= hw; y0 -= hw; x1 += hw; y1 = fminf(y1 + hw, ylim);
    if (!(y0 <= y1)) return 0;
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (int c = 0; c < 4; c++) {
        double u = c & 1 ? x1 : x0, v = c & 2 ? y1 : y0;
        double X = t[0] * u + t[2] * v + t[4], Y = t[1] * u + t[3] * v + t[5];
        lo[0] = fmin(lo[0], X); hi[0] = fmax(hi[0], X);
        lo[1] = fmin(lo[1], Y); hi[1] = fmax(hi[1], Y);
    }
    for (int a = 0; a < 2; a++) { /* within int range; the caller clips to the frame */
        box[a] = (int)fmax(floor(lo[a]) - 1.0, -1.0 - AVZ_MAX_SIZE);
        box[a + 2] = (int)fmin(ceil(hi[a]) + 1.0, 2.0 * AVZ_MAX_SIZE + 1.0);
    }
    return 1;
}

/* Blends the premultiplied box image `src` (bw x bh at frame position x0, y0)
 * into the 3-channel frame: out = round(d + a * (s - d)) with s the straight
 * colour (un-premultiplied through the table, as avz_render returns it) and
 * a = alpha / 255 * opacity * fade. Transparent pixels cost one load. */
static void avz__blend(const uint8_t *src, int bw, int bh, uint8_t *frame, int stride, int x0, int y0,
                       const avz_overlay_options *o) {
    avz__unprem_init(); /* the table it reads, made once (as avz__unpremultiply does) */
    const int ri = o->order == AVZ_ORDER_BGR ? 2 : 0, bi = 2 - ri;
    /* canonical y at a pixel centre: yc = ib * x + id * y + iff (the inverse's second row) */
    const double *m = o->transform;
    double det = m[0] * m[3] - m[1] * m[2];
    double ib = -m[1] / det, id = m[0] / det, iff = (m[1] * m[4] - m[0] * m[5]) / det;
    const float op = o->opacity;
    for (int y = 0; y < bh; y++) {
        const uint8_t *srow = src + (size_t)y * 4 * bw;
        uint8_t *drow = frame + (size_t)(y0 + y) * stride + 3 * (size_t)x0;
        /* fade along the row: k(x) = clamp((end - yc(x)) / width, 0, 1), yc affine in x.
         * k0 and dk stay double: in float they overflow to +-inf for a tiny fade_width
         * (a denormal such as 1e-45), and inf + -inf * x is NaN, which passed both clamp
         * tests at full alpha. In double they are finite: the checked transform (each
         * coefficient within +-1e6, |det| >= 1e-12) bounds |ib| by 1e18 and |yc| by
         * ~1e31, and fade_width >= FLT_TRUE_MIN (~1.4e-45) bounds k by ~1e76, so k is
         * never NaN and a fade_width below a pixel's size is a hard edge at fade_end. */
        int fade_row = 0;
        double k0 = 1.0, dk = 0.0;
        if (o->use_fade) {
            double yc0 = ib * (x0 + 0.5) + id * (y0 + y + 0.5) + iff, yc1 = yc0 + ib * (bw - 1);
            double lo = fmin(yc0, yc1), hi = fmax(yc0, yc1);
            if (lo >= o->fade_end) continue;                 /* the whole row is past the fade */
            if (hi > (double)o->fade_end - o->fade_width) {  /* some pixels are in the band */
                fade_row = 1;
                k0 = ((double)o->fade_end - yc0) / o->fade_width;
                dk = -ib / o->fade_width;
            }
        }
        /* rows outside the fade band at opacity 1 copy opaque pixels as they are */
        const int copy_opaque = !fade_row && op >= 1.f;
        for (int x = 0; x < bw; x++) {
            uint32_t v;
            memcpy(&v, srow + 4 * x, 4);
            uint32_t pa = v >> 24;
            if (pa == 0) {
                /* skip transparent runs (most of the box around the avatar) 4 pixels at a time */
                while (x + 4 < bw) {
                    uint32_t q[4];
                    memcpy(q, srow + 4 * (x + 1), 16);
                    if ((q[0] | q[1] | q[2] | q[3]) >> 24) break;
                    x += 4;
                }
                continue;
            }
            uint8_t *d = drow + 3 * x;
            uint32_t c[3] = {(v >> 16) & 0xFFu, (v >> 8) & 0xFFu, v & 0xFFu};
            if (pa == 255 && copy_opaque) {
                d[ri] = (uint8_t)c[0]; d[1] = (uint8_t)c[1]; d[bi] = (uint8_t)c[2];
                continue;
            }
            float a = op * (float)pa * (1.f / 255.f);
            if (fade_row) {
                double k = k0 + dk * x;
                if (!(k > 0.0)) continue; /* past fade_end (and, were k ever NaN, not drawn) */
                if (k < 1.0) a *= (float)k;
            }
            if (pa != 255) {
                const uint8_t *t = avz__unprem[pa];
                c[0] = t[c[0]]; c[1] = t[c[1]]; c[2] = t[c[2]];
            }
            float d0 = d[ri], d1 = d[1], d2 = d[bi];
            d[ri] = (uint8_t)(d0 + a * ((float)c[0] - d0) + 0.5f);
            d[1] = (uint8_t)(d1 + a * ((float)c[1] - d1) + 0.5f);
            d[bi] = (uint8_t)(d2 + a * ((float)c[2] - d2) + 0.5f);
        }
    }
}

typedef struct avz__blend_ctx {
    uint8_t *frame;
    int stride, x0, y0;
    const avz_overlay_options *options;
} avz__blend_ctx;

/* The overlay's post step: a band of the box blended into the same rows of the frame. */
static void avz__blend_band(const avz__band *b, void *ctx) {
    const avz__blend_ctx *c = ctx;
    avz__blend(b->buf + (size_t)b->y0 * b->stride, b->width, b->y1 - b->y0, c->frame, c->stride, c->x0,
               c->y0 + b->y0, c->options);
}

avz_status avz_overlay(avz_renderer *r, const float *params, size_t n, uint8_t *frame, int width, int height,
                       int stride, const avz_overlay_options *options) {
    if (!r) return AVZ_E_NULL;
    r->error[0] = 0;
    if (!frame) return avz__fail(r, AVZ_E_NULL, "frame buffer is NULL");
    if (!options) return avz__fail(r, AVZ_E_NULL, "options is NULL (the transform is required)");
    if (width < 1 || height < 1 || width > AVZ_MAX_SIZE || height > AVZ_MAX_SIZE) {
        snprintf(r->error, sizeof r->error, "size %dx%d is outside 1..%d", width, height, AVZ_MAX_SIZE);
        return AVZ_E_SIZE;
    }
    if (stride < 3 * width) {
        snprintf(r->error, sizeof r->error, "stride %d must be >= 3 * width (%d)", stride, 3 * width);
        return AVZ_E_STRIDE;
    }
    avz_status st = avz__check_overlay(r, options);
    if (st != AVZ_OK) return st;
    st = avz_scene_build(r->scene, params, n);
    if (st != AVZ_OK) return avz__fail(r, st, r->scene->error);
    int x0 = options->box[0] > 0 ? options->box[0] : 0, y0 = options->box[1] > 0 ? options->box[1] : 0;
    int x1 = options->box[2] < width ? options->box[2] : width, y1 = options->box[3] < height ? options->box[3] : height;
    int sb[4]; /* only where the avatar draws (above the fade's end): less to draw and blend */
    if (!avz__scene_box(r->scene, options->transform, options->use_fade ? options->fade_end : INFINITY, sb))
        return AVZ_OK;
    if (sb[0] > x0) x0 = sb[0];
    if (sb[1] > y0) y0 = sb[1];
    if (sb[2] < x1) x1 = sb[2];
    if (sb[3] < y1) y1 = sb[3];
    if (x1 <= x0 || y1 <= y0 || options->opacity <= 0.f) return AVZ_OK;
    int bw = x1 - x0, bh = y1 - y0;
    size_t need = (size_t)4 * bw * bh;
    if (need > r->scratch_cap) {
        uint8_t *ns = malloc(need); /* the old contents are not needed: no realloc copy */
        if (!ns) return avz__fail(r, AVZ_E_NOMEM, "out of memory for the overlay image");
        free(r->scratch);
        r->scratch = ns;
        r->scratch_cap = need;
    }
    avz_render_options ro;
    avz_render_options_init(&ro); /* transparent */
    ro.use_transform = 1;
    memcpy(ro.transform, options->transform, sizeof ro.transform);
    ro.transform[4] -= x0;
    ro.transform[5] -= y0;
    ro.antialias = options->antialias;
    avz__blend_ctx bc = {frame, stride, x0, y0, options};
    return avz__draw_premultiplied(r, r->scratch, bw, bh, 4 * bw, &ro, avz__blend_band, &bc);
}

/* The UTC date and time of secs since 1970 as 14 digits YYYYMMDDHHmmSS (and a NUL): days to a civil
 * date by Howard Hinnant's algorithm (http://howardhinnant.github.io/date_algorithms.html), so that no
 * libc time function is called: C11's gmtime fills one buffer the whole process shares (another thread's
 * gmtime or localtime changed a PDF's date; a review, session 68), and gmtime_r is POSIX's. */
static void avz__utc_digits(long long secs, char out[15]) {
    long long days = secs / 86400, rem = secs % 86400;
    long long z = days + 719468, era = z / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1), m = (int)(mp < 10 ? mp + 3 : mp - 9);
    long long y = yoe + era * 400 + (m <= 2);
    const long long parts[6] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60};
    const int widths[6] = {4, 2, 2, 2, 2, 2};
    int at = 0;
    for (int i = 0; i < 6; i++) /* (digits by hand: the year is 0-9999, the caller checks) */
        for (int j = widths[i] - 1; j >= 0; j--, at++) {
            long long v = parts[i];
            for (int r = 0; r < j; r++) v /= 10;
            out[at] = (char)('0' + v % 10);
        }
    out[14] = '\0';
}

/* A cross-reference subsection's header at *q, "first count\n", followed by count entries of 20 bytes
 * "oooooooooo ggggg n \n" whose offsets are digits: 1 with *q at its first entry and *count set, else 0
 * (*count 0). */
static int avz__xref_subsection(const unsigned char *doc, size_t len, size_t *q, unsigned long long *count) {
    size_t p = *q;
    unsigned long long n = 0;
    *count = 0;
    while (p < len && doc[p] >= '0' && doc[p] <= '9') p++;
    if (p >= len || doc[p++] != ' ') return 0;
    const size_t c0 = p;
    while (p < len && doc[p] >= '0' && doc[p] <= '9' && p - c0 < 19) n = n * 10 + (doc[p++] - '0');
    if (p == c0 || p >= len || doc[p++] != '\n' || n > (len - p) / 20) return 0;
    for (unsigned long long e = 0; e < n; e++)
        for (int j = 0; j < 10; j++)
            if (doc[p + 20 * e + j] < '0' || doc[p + 20 * e + j] > '9') return 0;
    *q = p;
    *count = n;
    return 1;
}

/* The number after "surface" at doc[i] (its digits end at *end), or -1 where none or over 18 digits. */
static long long avz__surface_number(const unsigned char *doc, size_t len, size_t i, size_t *end) {
    static const char key[] = "surface";
    const size_t kl = sizeof key - 1;
    if (len - i <= kl || memcmp(doc + i, key, kl) != 0) return -1;
    size_t j = i + kl;
    long long v = 0;
    while (j < len && doc[j] >= '0' && doc[j] <= '9') {
        if (j - (i + kl) >= 18) return -1;
        v = v * 10 + (doc[j] - '0');
        j++;
    }
    if (j == i + kl) return -1;
    *end = j;
    return v;
}

/* An SVG's surface ids: cairo numbers its surfaces by a counter of the whole process ("<g id="surface6">"
 * after five other surfaces, the images of earlier renders included), so the same picture gave other bytes
 * after other calls. They are renumbered per document in the order of their numbers, from 1 (from 0 where
 * one is 0): never more digits, so in place. Returns the new length (the same where there are more than 64
 * distinct surfaces, never in a drawing of this library's). */
static size_t avz__svg_surface_ids(unsigned char *doc, size_t len) {
    long long seen[64];
    size_t ns = 0, end = 0;
    for (size_t i = 0; i < len; i++) {
        long long v = avz__surface_number(doc, len, i, &end);
        if (v < 0) continue;
        size_t k = 0;
        while (k < ns && seen[k] != v) k++;
        if (k == ns) {
            if (ns == sizeof seen / sizeof seen[0]) return len;
            seen[ns++] = v;
        }
        i = end - 1;
    }
    for (size_t a = 1; a < ns; a++) /* ascending */
        for (size_t b = a; b > 0 && seen[b - 1] > seen[b]; b--) {
            long long t = seen[b];
            seen[b] = seen[b - 1];
            seen[b - 1] = t;
        }
    long long base = ns && seen[0] == 0 ? 0 : 1;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        long long v = ns ? avz__surface_number(doc, len, i, &end) : -1;
        if (v < 0) {
            doc[o++] = doc[i++];
            continue;
        }
        size_t k = 0;
        while (seen[k] != v) k++;
        char num[24];
        int nd = snprintf(num, sizeof num, "%lld", base + (long long)k);
        memmove(doc + o, doc + i, 7); /* "surface" */
        memcpy(doc + o + 7, num, (size_t)nd);
        o += 7 + (size_t)nd;
        i = end;
    }
    return o;
}

/* A PDF's creation date: SOURCE_DATE_EPOCH's (https://reproducible-builds.org/specs/source-date-epoch/:
 * whole seconds since 1970 UTC, decimal digits only) where it is set, so that the same avatar gives the
 * same bytes, as an SVG does; else cairo's, the time of writing. Cairo 1.16 reads no such variable, and
 * its metadata call writes a date without the "D:" the PDF standard asks for, so the 14 digits of the
 * date it wrote ("/CreationDate (D:YYYYMMDDHHmmSS" then "Z" or its local zone, "+01'00") are replaced in
 * place, and a zone by "Z": cairo writes "Z" where the local offset is 0 at the time of writing, so a
 * zone kept (even as "+00'00") made the bytes depend on the machine's zone and, in London or Lisbon, on
 * the season. The 5 bytes a zone loses move the objects after it, whose offsets in the cross-reference
 * table (fixed 10-digit entries, every subsection) and "startxref" are lowered to match; a layout
 * without them gets "+00'00". Returns the new length. */
static size_t avz__pdf_date(unsigned char *doc, size_t len) {
    const char *epoch = getenv("SOURCE_DATE_EPOCH");
    if (!epoch || !*epoch || strlen(epoch) > 15) return len;
    long long secs = 0;
    for (const char *c = epoch; *c; c++) {
        if (*c < '0' || *c > '9') return len;
        secs = secs * 10 + (*c - '0');
    }
    if (secs > 253402300799LL) return len; /* after 9999-12-31: no four-digit year */
    char date[15];
    avz__utc_digits(secs, date);
    static const char key[] = "/CreationDate (D:";
    const size_t k = sizeof key - 1;
    for (size_t i = 0; i + k + 14 <= len; i++) {
        if (memcmp(doc + i, key, k) != 0) continue;
        unsigned char *d = doc + i + k;
        for (size_t j = 0; j < 14; j++)
            if (d[j] < '0' || d[j] > '9') return len;
        memcpy(d, date, 14);
        /* the zone cairo wrote: "Z", or its local one ("+01'00", "-05'30") and the string's end */
        if (!(i + k + 21 <= len && (d[14] == '+' || d[14] == '-') && d[17] == '\'' && d[20] == ')')) return len;
        const size_t at = (size_t)(d + 14 - doc), cut = 5;
        /* the cross-reference table after it and startxref after that (cairo writes one of each, at the
         * end), each subsection "first count\n" then count entries of 20 bytes "oooooooooo ggggg n \n",
         * read whole before anything is changed: where the layout is another (a cross-reference stream),
         * the zone becomes "+00'00", the same length, the date still UTC's */
        static const char xref[] = "\nxref\n", sx[] = "\nstartxref\n";
        size_t t = 0, s = 0;
        for (size_t q = at; q + sizeof xref - 1 <= len; q++)
            if (memcmp(doc + q, xref, sizeof xref - 1) == 0) t = q + sizeof xref - 1;
        for (size_t q = t; t && q + sizeof sx - 1 <= len; q++)
            if (memcmp(doc + q, sx, sizeof sx - 1) == 0) s = q + sizeof sx - 1;
        unsigned long long start = 0;
        size_t se = s, q = t, entries = 0;
        int ok = t && s;
        while (ok && se < len && doc[se] >= '0' && doc[se] <= '9' && se - s < 19) start = start * 10 + (doc[se++] - '0');
        ok = ok && se > s && start > at;
        unsigned long long count = 0;
        while (ok && q < len && doc[q] >= '0' && doc[q] <= '9') { /* a subsection */
            ok = avz__xref_subsection(doc, len, &q, &count);
            q += 20 * count;
            entries += count;
        }
        if (!ok || !entries) {
            memcpy(d + 14, "+00'00", 6);
            return len;
        }
        for (q = t; q < len && doc[q] >= '0' && doc[q] <= '9';) { /* every subsection's offsets moved up */
            avz__xref_subsection(doc, len, &q, &count); /* (read whole above) */
            for (unsigned long long e = 0; e < count; e++) {
                unsigned char *row = doc + q + 20 * e;
                if (row[17] != 'n') continue; /* a free entry: no offset */
                unsigned long long off = 0;
                for (int j = 0; j < 10; j++) off = off * 10 + (row[j] - '0');
                if (off <= at) continue;
                char num[11];
                snprintf(num, sizeof num, "%010llu", off - cut);
                memcpy(row, num, 10);
            }
            q += 20 * count;
        }
        /* startxref's number (its digits may get fewer: the file's end moves up behind it) */
        char num[24];
        int w = snprintf(num, sizeof num, "%llu", start - cut);
        const size_t old = se - s;
        memcpy(doc + s, num, (size_t)w);
        memmove(doc + s + w, doc + se, len - se);
        len -= old - (size_t)w;
        /* the zone "+hh'mm" becomes "Z" */
        d[14] = 'Z';
        memmove(d + 15, d + 20, len - (at + 6));
        return len - cut;
    }
    return len;
}

static cairo_status_t avz__vec_write(void *closure, const unsigned char *data, unsigned int len) {
    avz_renderer *r = closure;
    if (r->vec_len + len > r->vec_cap) {
        size_t cap = r->vec_cap ? r->vec_cap * 2 : 65536;
        while (cap < r->vec_len + len) cap *= 2;
        unsigned char *nv = realloc(r->vec, cap);
        if (!nv) { r->vec_oom = 1; return CAIRO_STATUS_WRITE_ERROR; }
        r->vec = nv;
        r->vec_cap = cap;
    }
    memcpy(r->vec + r->vec_len, data, len);
    r->vec_len += len;
    return CAIRO_STATUS_SUCCESS;
}

avz_status avz_render_vector(avz_renderer *r, const float *params, size_t n, int format, double width,
                             double height, const avz_render_options *options, const uint8_t **data,
                             size_t *size) {
    if (!r) return AVZ_E_NULL;
    r->error[0] = 0;
    if (!data || !size) return avz__fail(r, AVZ_E_NULL, "data/size output pointers are NULL");
    *data = NULL;
    *size = 0;
    if (!(width >= 1 && height >= 1 && width <= AVZ_MAX_SIZE && height <= AVZ_MAX_SIZE))
        return avz__fail(r, AVZ_E_SIZE, "vector size must be finite and within 1..16384 points");
    if (format != AVZ_FORMAT_SVG && format != AVZ_FORMAT_PDF)
        return avz__fail(r, AVZ_E_ARG, "format must be AVZ_FORMAT_SVG or AVZ_FORMAT_PDF");
    if (format == AVZ_FORMAT_PDF && (width > AVZ_MAX_PDF_SIZE || height > AVZ_MAX_PDF_SIZE))
        return avz__fail(r, AVZ_E_SIZE, "a PDF page is at most " AVZ_STRINGIFY(AVZ_MAX_PDF_SIZE)
                                        " points a side (the PDF limit)");
    avz_render_options def;
    if (!options) { avz_render_options_init(&def); options = &def; }
    avz_status st = avz__check_opts(r, options, width, height);
    if (st != AVZ_OK) return st;
    if (options->use_transform) {
        const double *t = options->transform;
        double det = fabs(t[0] * t[3] - t[1] * t[2]);
        if (t[0] * t[0] + t[1] * t[1] + t[2] * t[2] + t[3] * t[3] > AVZ__MAX_VECTOR_STRETCH * det)
            return avz__fail(r, AVZ_E_ARG, "transform stretches one way over 1e8 times the other (a^2+b^2+c^2+d^2 "
                                           "> 1e8 |ad-bc|): too flat for vector output");
    }
    st = avz_scene_build(r->scene, params, n);
    if (st != AVZ_OK) return avz__fail(r, st, r->scene->error);
    r->vec_len = 0;
    r->vec_oom = 0;
    cairo_surface_t *surf = format == AVZ_FORMAT_SVG
                                ? cairo_svg_surface_create_for_stream(avz__vec_write, r, width, height)
                                : cairo_pdf_surface_create_for_stream(avz__vec_write, r, width, height);
    if (format == AVZ_FORMAT_SVG) cairo_svg_surface_restrict_to_version(surf, CAIRO_SVG_VERSION_1_1);
    cairo_t *cr = cairo_create(surf);
    avz__setup(cr, width, height, options);
    avz__draw_scene(cr, r->scene);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(surf);
    if (cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(surf);
    cairo_surface_destroy(surf);
    if (r->vec_oom) return avz__fail(r, AVZ_E_NOMEM, "out of memory while writing the vector document");
    if (cs != CAIRO_STATUS_SUCCESS) return avz__fail(r, AVZ_E_CAIRO, cairo_status_to_string(cs));
    r->vec_len = format == AVZ_FORMAT_PDF ? avz__pdf_date(r->vec, r->vec_len) : avz__svg_surface_ids(r->vec, r->vec_len);
    *data = r->vec;
    *size = r->vec_len;
    return AVZ_OK;
}
