/*
 * model.summary() as Keras 2.11 prints it for a Sequential model: 65
 * columns with stops at 29, 55 and 65, cells cut to their column (minus
 * two spaces of separation) and continued on the next row, a blank row
 * between layers, and totals with thousands separators.
 */
#include "nn/model.h"

#include <string.h>

#define LINE_LENGTH 65

static const int stops[3] = {29, 55, 65};

/* Print one logical row, wrapping each cell onto continuation lines the way
 * Keras's print_row does, including its preference for breaking after
 * "),", "},", "]," or "',". */
static void print_row(FILE *out, const char *const fields[3])
{
    char left[3][128];
    for (int i = 0; i < 3; i++)
        snprintf(left[i], sizeof left[i], "%s", fields[i]);
    while (left[0][0] || left[1][0] || left[2][0]) {
        char line[256] = "";
        size_t len = 0;
        for (int col = 0; col < 3; col++) {
            int start = col > 0 ? stops[col - 1] : 0;
            int space = col != 2 ? 2 : 0;
            size_t cutoff = (size_t)(stops[col] - start - space);
            size_t avail = strlen(left[col]);
            size_t take = avail < cutoff ? avail : cutoff;
            static const char *const breaks[] = {"),", "},", "],", "',"};
            for (int b = 0; b < 4; b++) {
                char window[128];
                memcpy(window, left[col], take);
                window[take] = '\0';
                char *hit = strstr(window, breaks[b]);
                if (hit != NULL && (size_t)(hit - window) + 2 < take)
                    take = (size_t)(hit - window) + 2;
            }
            if (col == 0)
                line[len++] = ' ';
            memcpy(line + len, left[col], take);
            len += take;
            for (int s = 0; s < space; s++)
                line[len++] = ' ';
            memmove(left[col], left[col] + take, strlen(left[col]) - take + 1);
            while (len < (size_t)stops[col])
                line[len++] = ' ';
        }
        line[len] = '\0';
        fprintf(out, "%s\n", line);
    }
}

static void format_shape(char *buf, size_t cap, nn_shape s)
{
    if (s.rank == 1)
        snprintf(buf, cap, "(None, %d)", s.c);
    else
        snprintf(buf, cap, "(None, %d, %d, %d)", s.h, s.w, s.c);
}

/* 93322 -> "93,322" */
static void format_thousands(char *buf, size_t cap, size_t value)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%zu", value);
    size_t pos = 0;
    for (int i = 0; i < n && pos + 1 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0 && pos + 2 < cap)
            buf[pos++] = ',';
        buf[pos++] = digits[i];
    }
    buf[pos] = '\0';
}

static size_t layer_param_count(const nn_layer *l)
{
    size_t count = 0;
    for (int i = 0; i < l->num_params; i++)
        count += l->params[i].size;
    return count;
}

void nn_model_summary(const nn_model *m, FILE *out)
{
    char line[LINE_LENGTH + 1];

    fprintf(out, "Model: \"%s\"\n", m->name);
    memset(line, '_', LINE_LENGTH);
    line[LINE_LENGTH] = '\0';
    fprintf(out, "%s\n", line);
    print_row(out, (const char *const[]){"Layer (type)", "Output Shape", "Param #"});
    memset(line, '=', LINE_LENGTH);
    fprintf(out, "%s\n", line);
    for (int i = 0; i < m->num_layers; i++) {
        const nn_layer *l = &m->layers[i];
        char name[96], shape[64], params[32];
        snprintf(name, sizeof name, "%s (%s)", l->name, nn_layer_class_name(l->kind));
        format_shape(shape, sizeof shape, l->out);
        snprintf(params, sizeof params, "%zu", layer_param_count(l));
        print_row(out, (const char *const[]){name, shape, params});
        if (i + 1 < m->num_layers)
            fprintf(out, "%*s\n", LINE_LENGTH, "");
    }
    memset(line, '=', LINE_LENGTH);
    fprintf(out, "%s\n", line);
    char total[32], trainable[32], non_trainable[32];
    format_thousands(total, sizeof total, m->num_trainable + m->num_non_trainable);
    format_thousands(trainable, sizeof trainable, m->num_trainable);
    format_thousands(non_trainable, sizeof non_trainable, m->num_non_trainable);
    fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", total,
            trainable, non_trainable);
    memset(line, '_', LINE_LENGTH);
    fprintf(out, "%s\n", line);
}
