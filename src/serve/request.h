/*
 * Request decoding: the body of a TensorFlow Serving predict request or a
 * KServe V2 infer request becomes a batch of model inputs, or an error with
 * the HTTP status and TensorFlow Serving-style message to send back.
 *
 * A predict request carries "instances" (row format, one value per
 * example) or "inputs" (columnar, the whole batch). Each example is either
 *   {"b64": "<JPEG or PNG>"}          decoded, resized and scaled (image.h)
 *   28x28, 28x28x1 or 784 numbers     pixels in [0, 1], used as they are
 * and may be wrapped in an object keyed by the input name, as clients of
 * the reference design's signature send {"image_bytes": {"b64": ...}}.
 * Pixel values are not range-checked, as TensorFlow Serving does not check
 * them either. NaN and Infinity reach the model. In the three reference
 * models the ReLU after the first convolution turns NaN into 0, so the
 * probabilities come back finite. A model without that ReLU would return
 * NaN, which the reply writes as NaN.
 */
#ifndef DISTML_SERVE_REQUEST_H
#define DISTML_SERVE_REQUEST_H

#include <stddef.h>

#define SRV_ERROR_MAX 1024

/* The maximum number of examples in one request; larger requests get a
 * 400. A 32 MiB body of 28x28 JPEGs can contain about 80,000 of them,
 * which would need 250 MB of float input. */
#define SRV_MAX_BATCH 16384

typedef struct {
    int status; /* HTTP status code */
    char message[SRV_ERROR_MAX];
} srv_error;

/* Sets ERR and returns -1. */
int srv_error_set(srv_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What a request is decoded against. */
typedef struct {
    const char *input_name;  /* "image_bytes" */
    const char *output_name; /* "predictions" */
    int height, width;       /* 28, 28; the model takes one channel */
} srv_signature;

typedef enum {
    SRV_FORMAT_ROW,      /* "instances" -> reply "predictions" */
    SRV_FORMAT_COLUMNAR, /* "inputs" -> reply "outputs" */
} srv_format;

typedef struct {
    float *x;  /* (batch, height, width, 1), malloc'd */
    int batch;
    srv_format format;
    char *id;  /* V2 request "id", malloc'd, or NULL */
} srv_input;

/* Decodes a TensorFlow Serving predict body (SIZE bytes) into IN. */
int srv_decode_predict(const char *body, size_t size, const srv_signature *sig, srv_input *in,
                       srv_error *err);

/* Decodes a KServe V2 infer body: one input, FP32 shaped [N,H,W], [N,H,W,1]
 * or [N,H*W] with "data" nested or flat, or BYTES shaped [N] whose
 * elements are base64 strings of JPEG or PNG files. */
int srv_decode_infer(const char *body, size_t size, const srv_signature *sig, srv_input *in,
                     srv_error *err);

void srv_input_free(srv_input *in);

#endif
