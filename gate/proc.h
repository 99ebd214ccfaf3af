/*
 * proc.h - the gate process: `lbd --gate-process`, started and supervised by
 * lbd (lbd/gatesup.c), so that nothing the gate waits on can stall the VIP.
 * proc.c's top comment lists the messages on the channel.
 */
#ifndef LBD_GATE_PROC_H
#define LBD_GATE_PROC_H

/* The argument that makes lbd's main() run the gate process. */
#define GATE_PROCESS_ARG "--gate-process"
/* The descriptors lbd hands over: the channel, and gate.listen if any. */
#define GATE_CHAN_FD 3
#define GATE_LISTEN_FD 4

/* Runs the gate process until lbd goes away or it is told to stop; returns
 * its exit status. listen_fd is -1 without gate.listen. */
int gate_process_main(int chan_fd, int listen_fd);

#endif
