/* calib.h - the calibration object (codebooks and head projections),
 * shared by calib.c, calib_io.c and cache.c. */
#ifndef GEAR_CALIB_H
#define GEAR_CALIB_H

#include "internal.h"

struct gear_calib {
    gear_calib_params p;
    unsigned n_layer, n_head, d;  /* the model's KV heads and head dim */
    unsigned sh, sd;              /* stored heads and dim (n_head/hc_group, hc_dim under HC) */
    int fitted;
    /* samples until fit: per layer [token][head][d] fp32 for K and V, and weights */
    float **samp[2], **wts;
    unsigned *n_samp, *cap_samp;  /* tokens held and room, per layer */
    /* head compression, per layer l, kind kv, group j:
     * mean at hc_mean[kv] + (l*sh + j)*gd, U (gd x hc_dim, row-major) at
     * hc_u[kv] + (l*sh + j)*gd*hc_dim, gd = hc_group*d */
    float *hc_mean[2], *hc_u[2];
    /* codebooks, per layer l and stored head h: cb[kv] + (l*sh + h)*cb_head
     * (fp32 holding fp16 values; layout of gear_block_layout.codebook) */
    float *cb[2];
    size_t cb_head[2];
    unsigned tokens;
    double hc_energy[2], cq_rel_err[2];
};

/* Check params for a model shape (GEAR_ERR_INVALID_ARG with a message). */
gear_status gear_calib_check(const gear_calib_params *p, unsigned n_layer, unsigned n_head,
                             unsigned d);
/* Allocate an unfitted calibration with its fitted arrays (zeroed). */
gear_status gear_calib_alloc(const gear_calib_params *p, unsigned n_layer, unsigned n_head,
                             unsigned d, gear_calib **out);
/* Floats of each fitted array, per kind. */
size_t gear_calib_hc_mean_floats(const gear_calib *cal);
size_t gear_calib_hc_u_floats(const gear_calib *cal);
size_t gear_calib_cb_floats(const gear_calib *cal, int kv);
/* Deep copy of a fitted calibration. */
gear_status gear_calib_dup(const gear_calib *cal, gear_calib **out);
/* y[m] = U^T (x - mean) for U of D rows x m (mean may be NULL). */
void gear_hc_down(const float *U, unsigned D, unsigned m, const float *x, const float *mean,
                  float *y);
/* x[D] = Ut y + mean, Ut holding m rows of D at stride ld (U transposed). */
void gear_hc_up(const float *Ut, size_t ld, unsigned D, unsigned m, const float *y,
                const float *mean, float *x);
/* Project rows x (T tokens of the n_head*d channels, token-major
 * [t][head][d]) of layer l, kind kv, into y ([t][stored head][sd]). */
void gear_calib_project(const gear_calib *cal, unsigned l, int kv, const float *x, size_t T,
                        float *y);

#endif
