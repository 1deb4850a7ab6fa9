#include "train/progbar.h"

#include "base/clock.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define BAR_WIDTH 30

void progbar_begin(progbar *bar, FILE *out, int64_t target)
{
    memset(bar, 0, sizeof *bar);
    bar->out = out;
    bar->dynamic = isatty(fileno(out));
    bar->target = target;
    bar->start = dm_monotonic_seconds();
}

void progbar_format_value(char *buf, size_t cap, double value)
{
    if (fabs(value) > 1e-3)
        snprintf(buf, cap, "%.4f", value);
    else
        snprintf(buf, cap, "%.4e", value);
}

static void format_duration_per_step(char *buf, size_t cap, double seconds)
{
    if (seconds >= 1.0)
        snprintf(buf, cap, "%.0fs/step", seconds);
    else if (seconds >= 1e-3)
        snprintf(buf, cap, "%.0fms/step", seconds * 1e3);
    else
        snprintf(buf, cap, "%.0fus/step", seconds * 1e6);
}

static void format_eta(char *buf, size_t cap, double eta)
{
    long s = (long)eta;
    if (eta > 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, (s % 3600) / 60, s % 60);
    else if (eta > 60)
        snprintf(buf, cap, "%ld:%02ld", s / 60, s % 60);
    else
        snprintf(buf, cap, "%lds", s);
}

void progbar_update(progbar *bar, int64_t current, const progbar_metric *metrics, int count,
                    bool final)
{
    double now = dm_monotonic_seconds();
    if (current == 1)
        bar->after_first_step = now;
    if (!final && (!bar->dynamic || now - bar->last_draw < 0.05))
        return;
    bar->last_draw = now;

    char line[512];
    int digits = snprintf(NULL, 0, "%lld", (long long)bar->target);
    int len = snprintf(line, sizeof line, "%*lld/%lld [", digits, (long long)current,
                       (long long)bar->target);
    int filled = (int)(BAR_WIDTH * (double)current / (double)bar->target);
    filled = filled > BAR_WIDTH ? BAR_WIDTH : filled;
    for (int i = 0; i < filled - 1; i++)
        line[len++] = '=';
    if (filled > 0)
        line[len++] = current < bar->target ? '>' : '=';
    for (int i = filled; i < BAR_WIDTH; i++)
        line[len++] = '.';
    line[len++] = ']';
    line[len] = '\0';

    /* Keras times steps after the first one, which includes warm-up. */
    double per_step = current > 1 ? (now - bar->after_first_step) / (double)(current - 1)
                                  : now - bar->start;
    char piece[64];
    if (final) {
        format_duration_per_step(piece, sizeof piece, per_step);
        len += snprintf(line + len, sizeof line - len, " - %.0fs %s", now - bar->start, piece);
    } else {
        format_eta(piece, sizeof piece, per_step * (double)(bar->target - current));
        len += snprintf(line + len, sizeof line - len, " - ETA: %s", piece);
    }
    for (int i = 0; i < count && len < (int)sizeof line - 64; i++) {
        progbar_format_value(piece, sizeof piece, metrics[i].value);
        len += snprintf(line + len, sizeof line - len, " - %s: %s", metrics[i].name, piece);
    }
    if (bar->dynamic) {
        /* Pad a shorter redraw so no characters of the last one remain. */
        int pad = bar->previous_width > len ? bar->previous_width - len : 0;
        fprintf(bar->out, "\r%s%*s", line, pad, "");
        bar->previous_width = len;
        if (final)
            fputc('\n', bar->out);
    } else {
        fprintf(bar->out, "%s\n", line);
    }
    fflush(bar->out);
}
