/* Clocks: monotonic seconds for durations, wall seconds for timestamps. */
#ifndef DISTML_BASE_CLOCK_H
#define DISTML_BASE_CLOCK_H

double dm_monotonic_seconds(void);
double dm_wall_seconds(void);

#endif
