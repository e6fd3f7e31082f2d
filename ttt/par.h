/*
 * ttt/par.h — internal: when a CPU loop or a BLAS call may use more than
 * the calling thread.
 *
 * An OpenMP parallel region (and OpenBLAS's own threads) only pays when
 * the work per thread dwarfs the cost of waking the other threads and
 * waiting for the slowest at the closing barrier. On a machine where
 * other processes run, that wait is a scheduler time slice (milliseconds)
 * whenever one of our threads has been descheduled, so small work split
 * over 2 threads ran 5-100x slower than on one (tiny-model training,
 * single-token decode, the streaming daemon). Every parallel region of
 * the CPU ops in ttt/ and train/ therefore carries an
 * `if (VTTT_PAR(work))` clause, where work estimates the loop's cost as
 * elements x cost per element (VTTT_COST_* below; conv2d, groupnorm and
 * upsample keep thresholds of their own), and every sgemm/sgemv
 * (ttt_sgemm) under VTTT_BLAS_PAR_MIN_FLOPS runs with OpenBLAS on the
 * calling thread. Small work thus runs on one thread whatever the thread
 * count; large work is split as before.
 *
 * The thresholds were chosen with tools/probe/par_probe.c and whole runs
 * on the shared 2-core machine while it was busy (load 6, other jobs
 * running; docs/bench_ttt_cpu.md, "Small work on one thread"):
 * - a region run right after serial work (as in a model step, where the
 *   other thread has gone to sleep) cost 9-14 ms on 2 threads whatever its
 *   size: SiLU over 64k floats 0.22 ms on one thread vs 14 ms on two, over
 *   1M floats 3.6 vs 14 ms, over 4M floats 26 vs 32 ms. Back to back
 *   (the other thread still spinning) the same loops were up to 2x faster
 *   on 2 threads from 4k floats on, which is what the old per-file
 *   thresholds (16k-64k elements) had been set by.
 * - tiny-preset training (4 x 128 tokens a step) made 2600-3300 tokens/s
 *   on one thread; on two 1700-1800 with the threshold at 2^27 (its TTT
 *   inner loops then still split) and 2650-3200 at 2^29.
 * - OpenBLAS's threads synchronise within a product: a 128x768x768 sgemm
 *   took 3.0 ms on one thread vs 10.6 ms on two; in two runs 2 threads
 *   gained only from 512x768x768 (6e8 flops) on in one and never up to
 *   1024x768x768 (1.2e9) in the other.
 * Work is counted in units of about 0.1-0.2 ns of one core (a flop of the
 * TTT inner loop's small products; SiLU, 32 units an element, took
 * 3.4-6.3 ns), so VTTT_PAR_MIN_WORK (2^29) is ~50-100 ms of one core, and
 * VTTT_BLAS_PAR_MIN_FLOPS (1e9 flops of sgemm at ~100 GFLOP/s) ~10 ms.
 * On an idle machine work just under them runs up to 2x slower than it
 * could; on a busy one small work split over 2 threads ran 5-100x slower.
 */
#ifndef VTTT_PAR_H
#define VTTT_PAR_H

/* Work (units of ~0.1-0.2 ns of one core) below which a loop runs on the
 * calling thread. */
#ifndef VTTT_PAR_MIN_WORK /* (tests/CMakeLists.txt builds test_ops_par0 with 0) */
#define VTTT_PAR_MIN_WORK 536870912.0 /* 2^29 */
#endif
/* FLOPs (2 M N K) below which an sgemm/sgemv runs with one OpenBLAS thread. */
#ifndef VTTT_BLAS_PAR_MIN_FLOPS
#define VTTT_BLAS_PAR_MIN_FLOPS 1e9
#endif

/* Cost per element of the kinds of loops, in those units. */
#define VTTT_COST_COPY 2.0  /* a copy, add, scale or axpy of memory */
#define VTTT_COST_ROW 8.0   /* a norm: row statistics and their use */
#define VTTT_COST_EXP 32.0  /* an expf, tanhf, or sqrtf and a division */
#define VTTT_COST_TTT 8.0   /* one token of a TTT head, per inner-state float */
#define VTTT_COST_ATTN 4.0  /* one (query, key) pair of attention, per head-dim float */

/* 1 when work (units above) is worth a parallel region. */
#define VTTT_PAR(work) ((double)(work) >= VTTT_PAR_MIN_WORK)

#endif
