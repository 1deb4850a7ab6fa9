/*
 * Keras's Progbar: "70/70 [==============================] - 16s 136ms/step
 * - loss: 0.5716 - accuracy: 0.7920". On a terminal the line is redrawn in
 * place (at most every 50 ms); otherwise only the final line of each epoch
 * is printed, so logs hold one line per epoch.
 */
#ifndef DISTML_TRAIN_PROGBAR_H
#define DISTML_TRAIN_PROGBAR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PROGBAR_MAX_METRICS 4

typedef struct {
    const char *name;
    double value;
} progbar_metric;

typedef struct {
    FILE *out;
    bool dynamic; /* redraw in place (a terminal) */
    int64_t target;
    double start, after_first_step, last_draw;
    int previous_width;
} progbar;

void progbar_begin(progbar *bar, FILE *out, int64_t target);
/* Show CURRENT of TARGET steps with the metrics; FINAL ends the line. */
void progbar_update(progbar *bar, int64_t current, const progbar_metric *metrics, int count,
                    bool final);
/* Keras's metric format: %.4f, or %.4e for magnitudes up to 1e-3. */
void progbar_format_value(char *buf, size_t cap, double value);

#endif
