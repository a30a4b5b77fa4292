/* vigie-node --simulate: many virtual nodes in one process (node/simulate.c).
 * Internal: only node/main.c calls it. */
#ifndef VIGIE_NODE_SIMULATE_H
#define VIGIE_NODE_SIMULATE_H

#include <stdbool.h>

/* vigie__simulate_wanted: does the command line ask for --simulate? */
bool vigie__simulate_wanted(int argc, char **argv);

/* vigie__simulate_main: parse the simulation's own options and run it until
 * SIGINT/SIGTERM (or --simulate-duration). Returns the exit status: 0 ok,
 * 1 runtime failure, 2 bad usage or invalid configuration. */
int vigie__simulate_main(int argc, char **argv);

#endif
