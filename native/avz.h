/*
 * avz.h -- Avatarizer native renderer: parametric vector avatars on Cairo.
 *
 * An avatar is a vector of AVZ_PARAM_COUNT (629) floats described by the
 * schema shipped with the Python package (sdk/avatarizer/data/schema.json).
 * avz turns it into a list of vector shapes (the "scene": cubic Bezier paths,
 * fills, strokes and clip groups, in the canonical face frame where x and y run
 * from -1 to 1 across the aligned crop) and draws the scene with Cairo into a
 * caller-allocated RGBA buffer, or writes it as SVG or PDF.
 *
 * Usage:
 *
 *     avz_renderer *r = NULL;
 *     if (avz_renderer_create(&r) != AVZ_OK) { ... }
 *     float params[AVZ_PARAM_COUNT];
 *     avz_default_params(params, AVZ_PARAM_COUNT);
 *     int w = 512, h = 512, stride = 4 * w;
 *     unsigned char *rgba = malloc((size_t)stride * h);
 *     avz_render_options opt;
 *     avz_render_options_init(&opt);              // transparent, fit to the image
 *     avz_status st = avz_render(r, params, AVZ_PARAM_COUNT, rgba, w, h, stride, &opt);
 *     if (st != AVZ_OK) fprintf(stderr, "%s: %s\n", avz_status_string(st), avz_renderer_error(r));
 *     avz_renderer_destroy(r);
 *
 * Conventions: every function that can fail returns an avz_status; handles are
 * opaque and come in create/destroy pairs; destroy accepts NULL, and a destroyed
 * handle must not be used again (not even for its error string). A handle must
 * not be used from two threads at once (use one renderer per thread; renderers
 * on different threads may draw at the same time, checked under ThreadSanitizer
 * by `make sanitize`). The output buffer holds straight (not premultiplied)
 * RGBA, 8 bits per channel, rows `stride` bytes apart.
 */
#ifndef AVZ_H
#define AVZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AVZ_VERSION_MAJOR 1
#define AVZ_VERSION_MINOR 3
#define AVZ_VERSION_PATCH 5
/* The header's version as "major.minor.patch": compare it with avz_version()
 * (the library's) to catch a program built against another avz.h. */
#define AVZ_STRINGIFY_(x) #x
#define AVZ_STRINGIFY(x) AVZ_STRINGIFY_(x)
#define AVZ_VERSION AVZ_STRINGIFY(AVZ_VERSION_MAJOR) "." AVZ_STRINGIFY(AVZ_VERSION_MINOR) "." AVZ_STRINGIFY(AVZ_VERSION_PATCH)
#define AVZ_PARAM_COUNT 629
#define AVZ_MAX_SIZE 16384
/* PDF pages: at most 14400 points (200 inches) a side, the PDF
 * specification's largest page (ISO 32000-1, Annex C); readers refuse larger pages. */
#define AVZ_MAX_PDF_SIZE 14400
#define AVZ_MAX_THREADS 8

typedef enum avz_status {
    AVZ_OK = 0,
    AVZ_E_NULL = 1,        /* a required pointer argument was NULL */
    AVZ_E_PARAM_COUNT = 2, /* the parameter vector does not have AVZ_PARAM_COUNT values */
    AVZ_E_NONFINITE = 3,   /* a parameter is NaN or infinite */
    AVZ_E_RANGE = 4,       /* a parameter is outside its schema range (by more than 1e-4 of the range's width
                              + 1e-6: float rounding, as the Python side's schema.validate allows) */
    AVZ_E_SIZE = 5,        /* width or height is < 1 or > AVZ_MAX_SIZE (a PDF page's > AVZ_MAX_PDF_SIZE), or not finite */
    AVZ_E_STRIDE = 6,      /* stride too small for a row: under 4 * width for RGBA (avz_render, then also
                              not a multiple of 4), under 3 * width for an overlay's RGB/BGR frame */
    AVZ_E_NOMEM = 7,       /* out of memory */
    AVZ_E_CAIRO = 8,       /* Cairo reported an error */
    AVZ_E_ARG = 9          /* another argument is invalid (see avz_renderer_error) */
} avz_status;

/* A fixed English sentence for a status code (never NULL). */
const char *avz_status_string(avz_status status);

/* The library version as "major.minor.patch" and the schema version it reads. */
const char *avz_version(void);
const char *avz_schema_version(void);

/* Fills `out` (n must be AVZ_PARAM_COUNT) with the canonical default face. */
avz_status avz_default_params(float *out, size_t n);

/* Checks a parameter vector against the schema (count, finite, ranges). */
avz_status avz_validate(const float *params, size_t n, char *message, size_t message_size);

/* ------------------------------------------------------------------ scene */

typedef enum avz_item_kind {
    AVZ_ITEM_FILL = 0,      /* fill the path (non-zero winding) with rgba */
    AVZ_ITEM_STROKE = 1,    /* stroke the path with rgba, `width` in frame units, round joins/caps */
    AVZ_ITEM_CLIP_PUSH = 2, /* intersect the clip with the path (until the matching POP) */
    AVZ_ITEM_CLIP_POP = 3   /* restore the clip of the matching PUSH */
} avz_item_kind;

/* Path encoding: a stream of floats, each command a code followed by its
 * coordinates: MOVE x y | LINE x y | CURVE x1 y1 x2 y2 x y | CLOSE. */
typedef enum avz_path_op { AVZ_OP_MOVE = 0, AVZ_OP_LINE = 1, AVZ_OP_CURVE = 2, AVZ_OP_CLOSE = 3 } avz_path_op;

typedef struct avz_item {
    int kind;          /* avz_item_kind */
    float rgba[4];     /* straight RGBA in [0, 1] */
    float width;       /* stroke width in frame units */
    uint32_t path_begin, path_end; /* float range of the path in the scene's path stream */
} avz_item;

typedef struct avz_scene avz_scene;

avz_status avz_scene_create(avz_scene **out);
void avz_scene_destroy(avz_scene *scene);
/* Builds the shapes of one avatar (validates the parameters first; on any error
 * the scene is left empty, since 1.3.3). */
avz_status avz_scene_build(avz_scene *scene, const float *params, size_t n);
/* Borrowed views into the scene, valid until the next build or destroy. */
avz_status avz_scene_items(const avz_scene *scene, const avz_item **items, size_t *count);
avz_status avz_scene_path(const avz_scene *scene, const float **data, size_t *count);
const char *avz_scene_error(const avz_scene *scene);

/* --------------------------------------------------------------- renderer */

typedef struct avz_render_options {
    float background[4]; /* straight RGBA in [0, 1]; alpha 0 gives a transparent image */
    int use_transform;   /* 0: fit the frame's [-1,1] square centred in the image */
    double transform[6]; /* if use_transform: frame -> pixels, x' = a x + c y + e, y' = b x + d y + f,
                            stored as {a, b, c, d, e, f} like cairo_matrix_t; finite, invertible
                            (|ad - bc| >= 1e-12), each coefficient within +-1e6 (since 1.3: beyond,
                            cairo's fixed-point coordinates overflow), else AVZ_E_ARG; for
                            avz_render_vector also a^2 + b^2 + c^2 + d^2 <= 1e8 |ad - bc| (since
                            1.3.2: flatter, cairo's stroker took seconds and gigabytes) */
    double zoom;         /* with fitting: > 1 zooms in around the centre (default 1); in [1e-6, 1000], and
                            zoom * min(width, height) / 2 at most 1e6 (a transform coefficient's bound) */
    int antialias;       /* AVZ_AA_BEST (default) or AVZ_AA_FAST (4x4 coverage, ~25% faster; since
                            1.3 always drawn whole on the calling thread: see avz_renderer_set_threads) */
} avz_render_options;

enum { AVZ_AA_BEST = 0, AVZ_AA_FAST = 1 };

void avz_render_options_init(avz_render_options *options);

typedef struct avz_renderer avz_renderer;

avz_status avz_renderer_create(avz_renderer **out);
void avz_renderer_destroy(avz_renderer *renderer);
/* Detail of the last error on this handle ("" if none). */
const char *avz_renderer_error(const avz_renderer *renderer);

/* (since 1.2) How many threads draw one image of avz_render / avz_overlay:
 * 1 (the default) draws on the calling thread; n in 2..AVZ_MAX_THREADS cuts
 * the image into n + 1 equal bands of rows (fewer when a band would have
 * under 32 rows) that the calling thread and n - 1 helper threads take one at
 * a time: sooner on a multi-core machine with a free core, with more CPU time
 * in all (each band sets up the shapes that cross it). The picture is the
 * same but where cairo clips an outline at a band edge: composited on white,
 * within 3 levels on avatars of real faces with 2 threads (3.5 at most seen; with
 * 3-8 threads more band edges: up to 5 levels seen; random parameter vectors
 * within the schema's ranges, not faces: 8 seen with 3 threads) (straight RGBA of nearly
 * transparent pixels can differ more, as any alpha difference of one level
 * does). AVZ_AA_FAST images are not cut into bands (since 1.3): cairo's 4x4
 * scan converter changed the coverage of rows above a band edge by up to 60
 * levels; only a stride over INT_MAX / height bytes (cairo addresses rows in
 * int) cuts any image, at every INT_MAX / stride rows, with such differences
 * there (composited on white up to 76 levels seen at a stride of 2^30). The
 * helpers are started by the first banded call and wait, idle,
 * between calls until avz_renderer_destroy joins them (a child process after
 * fork() starts its own); a handle is still used by one thread at a time.
 * AVZ_E_ARG outside 1..AVZ_MAX_THREADS. */
avz_status avz_renderer_set_threads(avz_renderer *renderer, int threads);
/* The current setting (0 for NULL). */
int avz_renderer_threads(const avz_renderer *renderer);

/* Draws the avatar into `rgba` (width x height pixels, rows `stride` bytes
 * apart, caller-allocated, at least stride * height bytes; since 1.3 `rgba`
 * must be 4-byte aligned and `stride` a multiple of 4, else AVZ_E_ARG /
 * AVZ_E_STRIDE). options may be NULL for the defaults. */
avz_status avz_render(avz_renderer *renderer, const float *params, size_t n, uint8_t *rgba,
                      int width, int height, int stride, const avz_render_options *options);

typedef enum avz_vector_format { AVZ_FORMAT_SVG = 0, AVZ_FORMAT_PDF = 1 } avz_vector_format;

/* Writes the same picture as a vector document of width x height points
 * (1..AVZ_MAX_SIZE; a PDF page at most AVZ_MAX_PDF_SIZE a side, else AVZ_E_SIZE).
 * On success *data / *size point to a buffer owned by the renderer, valid
 * until the next call on it. A PDF's creation date is the time of writing
 * (cairo's, in the machine's local time and zone), or the environment's
 * SOURCE_DATE_EPOCH (whole seconds since 1970 UTC: digits only, at most 15, up to
 * 9999-12-31; anything else is ignored and the time of writing used) where set, then written in
 * UTC with the zone "Z" whatever the machine's time zone or season: the same
 * picture then gives the same bytes, as an SVG does (since 1.3.5
 * its surface ids are numbered per document: cairo's count every surface of
 * the process, so the bytes followed the calls before). */
avz_status avz_render_vector(avz_renderer *renderer, const float *params, size_t n,
                             int format, double width, double height,
                             const avz_render_options *options, const uint8_t **data,
                             size_t *size);

/* ---------------------------------------------------------------- overlay
 * (since 1.1) Draws the avatar straight over a region of a caller's 8-bit
 * 3-channel frame (RGB or BGR), blended with an opacity and, optionally, a fade
 * toward a canonical y: what a live overlay needs, without an RGBA image, an
 * un-premultiply pass or a blend in the caller. The renderer keeps its scratch
 * image between calls (one handle per thread, as for avz_render). */

enum { AVZ_ORDER_RGB = 0, AVZ_ORDER_BGR = 1 };

typedef struct avz_overlay_options {
    double transform[6]; /* frame -> frame pixels (whole-frame coordinates), {a, b, c, d, e, f} as in
                            avz_render_options; must be invertible (init sets the identity) */
    int box[4];          /* x0, y0, x1, y1: the frame region drawn into, clipped to the frame
                            (init: the whole frame); outside it the frame is left alone. Since 1.3
                            only the part the avatar covers is drawn (its shapes' bounds through
                            the transform, above fade_end with use_fade): the whole frame as the
                            box costs about what a tight one does */
    float opacity;       /* in [0, 1] (init 1); 0 leaves the frame alone */
    int order;           /* AVZ_ORDER_RGB (init) or AVZ_ORDER_BGR: the frame's channel order */
    int use_fade;        /* 1: the avatar's alpha is also multiplied by clamp((fade_end - y) / fade_width, 0, 1),
                            y the canonical frame y at the pixel centre (init 0) */
    float fade_end, fade_width; /* finite; fade_width > 0 when use_fade. Any positive width works,
                            down to the smallest denormal float: a fade narrower than a pixel
                            is a hard edge at fade_end (nothing drawn at or past it) */
    int antialias;       /* AVZ_AA_BEST (init) or AVZ_AA_FAST */
} avz_overlay_options;

void avz_overlay_options_init(avz_overlay_options *options);

/* frame: width x height pixels of 3 bytes, rows `stride` bytes apart (stride >=
 * 3 * width), modified in place: each channel becomes
 * round(frame + a * (avatar - frame)), a = avatar alpha * opacity * fade: the
 * blend a caller would do with straight RGBA from avz_render of the box, within
 * 1 level (rounding). The avatar is drawn on a scratch image whose origin is the
 * box's corner cut to the shapes' bounds, and cairo's coverage of an outline
 * pixel depends on the image's origin: against one avz_render of the whole frame
 * composited in the box, a few outline pixels differ (measured over 48 random
 * boxes and rolled transforms of 13 avatars of real faces: up to 12 levels with
 * AVZ_AA_BEST, 52 with AVZ_AA_FAST, 2e-5 of the channel values over 1). An
 * argument refused leaves the frame as it was; after AVZ_E_CAIRO (cairo out
 * of memory) with several threads, some bands may already be blended. */
avz_status avz_overlay(avz_renderer *renderer, const float *params, size_t n, uint8_t *frame, int width,
                       int height, int stride, const avz_overlay_options *options);

#ifdef __cplusplus
}
#endif

#endif /* AVZ_H */
