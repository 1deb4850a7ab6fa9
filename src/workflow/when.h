/*
 * Argo's `when` conditions, evaluated after tag substitution the way Argo
 * evaluates them with govaluate: comparisons (==, !=, <, <=, >, >=, =~,
 * !~), && and ||, ! and parentheses, over numbers, quoted strings,
 * true/false, and bare words, which are read as strings so that
 * "heads == heads" holds. Bare words may contain '-', '.', '/' and ':'.
 */
#ifndef DISTML_WORKFLOW_WHEN_H
#define DISTML_WORKFLOW_WHEN_H

#include <stdbool.h>

/* Evaluate EXPRESSION into *RESULT. An empty expression is true. A
 * syntax error, a type mismatch or a non-boolean result is an error that
 * quotes the expression. */
int wf_when_evaluate(const char *expression, bool *result);

#endif
