/* Projector and packing (vision.md §2, §4). */
#ifndef MVL_PROJECTOR_H
#define MVL_PROJECTOR_H

#include "kernels/ops.h"
#include "model/model_dir.h"

typedef struct mvl_projector {
    int in_dim, out_dim;
    mvl_weight l1, b1;   /* [out, in], [1, out] */
    mvl_weight l2, b2;   /* [out, out], [1, out] */
    mvl_weight newline;  /* [1, out] image_newline, text space, never projected */
    bool bf16;           /* MVL_COMPUTE_BF16: Linear, GELU, Linear outputs rounded (set after init) */
} mvl_projector;

mvl_status mvl_projector_init(const mvl_model_dir *md, mvl_projector *p, mvl_error *err);
void mvl_projector_free(mvl_projector *p);

/* out[n, out_dim] = linear_2(gelu(linear_1(x[n, in_dim]))). */
mvl_status mvl_projector_forward(const mvl_projector *p, const float *x, int64_t n, float *out,
                                 mvl_error *err);

/* Kept window of the stitched feature grid (§4.1 step 5): rows [row0, row1)
 * and columns [col0, col1) of the (grid*rows) x (grid*cols) map, for an
 * original image of width x height, with integer floor arithmetic. */
typedef struct mvl_pack_geom {
    int64_t row0, row1, col0, col1;
} mvl_pack_geom;

void mvl_pack_geometry(int64_t width, int64_t height, int cols, int rows, int grid, mvl_pack_geom *g);
/* grid^2 + kept_rows * (kept_cols + 1) (§4.2). */
int64_t mvl_pack_count(const mvl_pack_geom *g, int grid);

/* feats: [1 + rows*cols, grid^2, D] projected features (thumbnail first,
 * then row-major tiles). out: [mvl_pack_count, D]: the thumbnail, then each
 * kept row of the stitched grid followed by newline[D] (§4.1 steps 3-7). */
void mvl_pack_image(const float *feats, int64_t dim, int grid, int cols, int rows,
                    const mvl_pack_geom *g, const float *newline, float *out);

#endif
