// Thin __global__ wrappers around the per-element functions of warp.cuh
// (paper eqs 2-4, 49-51; paper_notes/cuda_engine.md).  Each thread owns one output
// (or one output and a chunk of channels); all arithmetic lives in warp.cuh.
//
// warptheory/_engine_cupy.py compiles  warp.cuh + Kernel.c_source("wt_phi") + this
// file  with NVRTC and picks the template instances by name.  For a standalone
// nvcc compile check define WT_EXPLICIT_INSTANTIATION.
#ifndef WARPTHEORY_WARP_CUH
#include "warp.cuh"
#endif

#define WT_GRID_STRIDE_LOOP(index, total)                                                          \
    for (long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x; index < (total); \
         index += (long long)blockDim.x * gridDim.x)

// Every templated kernel takes the plan's geometry as  i0, i1, i2 (input grid),
// o0, o1, o2 (output grid; sizes beyond d are 1) and `relative` (positions v + eps, or eps).
#define WT_PLAN_ARGS long long i0, long long i1, long long i2, long long o0, long long o1, long long o2, int relative
#define WT_PLAN(D) wt_make_plan<D>(i0, i1, i2, o0, o1, o2, relative)

// Gather: warp forward (src = x) and unwarp grad_x (src = grad_y).  Thread layout
// (b, chunk, v) with v fastest, so a warp reads neighbouring eps and writes
// neighbouring outputs.
template <typename T, int D>
__global__ void wt_gather_kernel(const T* __restrict__ src, const T* __restrict__ eps, T* __restrict__ out,
                                 long long batch, long long channels, WT_PLAN_ARGS, int padding, long long chunk) {
    const WtPlan<D> plan = WT_PLAN(D);
    const long long M = plan.out.count;
    const long long chunks = (channels + chunk - 1) / chunk;
    WT_GRID_STRIDE_LOOP(index, batch * chunks * M) {
        const long long v = index % M;
        const long long bc = index / M;
        const long long b = bc / chunks;
        const long long n_begin = (bc % chunks) * chunk;
        const long long n_end = n_begin + chunk < channels ? n_begin + chunk : channels;
        wt_gather_output<T, D>(src, eps, out, b, v, channels, n_begin, n_end, plan, padding);
    }
}

// Position derivative: warp grad_eps (outer = grad_y, src = x) and unwarp grad_eps
// (outer = x, src = grad_y).  One thread per (b, v) reduces over all channels in a
// fixed order, so the result is deterministic.
template <typename T, int D>
__global__ void wt_position_derivative_kernel(const T* __restrict__ outer, const T* __restrict__ src,
                                              const T* __restrict__ eps, T* __restrict__ out, long long batch,
                                              long long channels, WT_PLAN_ARGS, int padding) {
    const WtPlan<D> plan = WT_PLAN(D);
    const long long M = plan.out.count;
    WT_GRID_STRIDE_LOOP(index, batch * M) {
        wt_position_derivative_output<T, D>(outer, src, eps, out, index / M, index % M, channels, plan, padding);
    }
}

// Scatter pass 1 for batches [b0, b0 + nb): key = (bl * (M_in + 1) + target) * E + e with
// bl = b - b0, E = M_out * 2^D and target M_in standing for "dropped".  Keys are unique,
// so any sort puts them in one order: grouped by (batch, target), ascending e inside.
template <typename T, int D>
__global__ void wt_scatter_keys_kernel(const T* __restrict__ eps, long long* __restrict__ keys,
                                       double* __restrict__ weights, long long b0, long long nb, WT_PLAN_ARGS,
                                       int padding) {
    const WtPlan<D> plan = WT_PLAN(D);
    constexpr int C = 1 << D;
    const long long M = plan.out.count;
    const long long E = M * C;
    WT_GRID_STRIDE_LOOP(index, nb * M) {
        const long long bl = index / M;
        const long long v = index % M;
        long long target[C];
        double weight[C];
        wt_scatter_entries<T, D>(eps, b0 + bl, v, plan, padding, target, weight);
        WT_UNROLL
        for (int c = 0; c < C; ++c) {
            const long long e = v * C + c;
            const long long t = target[c] == WT_NO_TARGET ? plan.in.count : target[c];
            keys[bl * E + e] = (bl * (plan.in.count + 1) + t) * E + e;
            weights[bl * E + e] = weight[c];
        }
    }
}

// Scatter pass 2b: decode the sorted keys into each entry's source position and weight.
extern "C" __global__ void wt_scatter_decode_kernel(const long long* __restrict__ sorted_keys,
                                                    const double* __restrict__ weights,
                                                    long long* __restrict__ source,
                                                    double* __restrict__ sorted_weight, long long total,
                                                    long long count, long long source_count, int log2_corners) {
    const long long E = source_count << log2_corners;
    WT_GRID_STRIDE_LOOP(j, total) {
        const long long key = sorted_keys[j];
        const long long bl = key / ((count + 1) * E);
        const long long e = key % E;
        source[j] = e >> log2_corners;
        sorted_weight[j] = weights[bl * E + e];
    }
}

// Scatter pass 2c: bounds[q] = first sorted position whose (batch, target) index is
// >= q, for q in [0, nb * (M_in + 1)); target u of local batch bl owns
// [bounds[bl*(M_in+1)+u], bounds[bl*(M_in+1)+u+1]).  Binary search instead of a histogram.
extern "C" __global__ void wt_segment_bounds_kernel(const long long* __restrict__ sorted_keys, long long total,
                                                    long long* __restrict__ bounds, long long nb, long long count,
                                                    long long source_count, int log2_corners) {
    const long long E = source_count << log2_corners;
    WT_GRID_STRIDE_LOOP(q, nb * (count + 1)) { bounds[q] = wt_lower_bound(sorted_keys, 0, total, q * E); }
}

// Scatter pass 3: warp grad_x (src = grad_y) and unwarp forward (src = x); `count` and
// `source_count` are M_in and M_out.
template <typename T>
__global__ void wt_scatter_gather_kernel(const T* __restrict__ src, T* __restrict__ out,
                                         const long long* __restrict__ source,
                                         const double* __restrict__ sorted_weight,
                                         const long long* __restrict__ bounds, long long b0, long long nb,
                                         long long channels, long long count, long long source_count,
                                         long long chunk) {
    const long long chunks = (channels + chunk - 1) / chunk;
    WT_GRID_STRIDE_LOOP(index, nb * chunks * count) {
        const long long u = index % count;
        const long long bc = index / count;
        const long long bl = bc / chunks;
        const long long n_begin = (bc % chunks) * chunk;
        const long long n_end = n_begin + chunk < channels ? n_begin + chunk : channels;
        const long long q = bl * (count + 1) + u;
        wt_gather_segment<T, long long>(src, out, b0 + bl, u, channels, count, source_count, n_begin, n_end, source,
                                        sorted_weight, bounds[q], bounds[q + 1]);
    }
}

// Optional fast path (deterministic=False): the scatter with floating-point atomics.
// Results vary in the last bits between runs because the addition order varies.
// `out` must be zero on entry.
template <typename T, int D>
__global__ void wt_scatter_atomic_kernel(const T* __restrict__ src, const T* __restrict__ eps, T* __restrict__ out,
                                         long long batch, long long channels, WT_PLAN_ARGS, int padding,
                                         long long chunk) {
    const WtPlan<D> plan = WT_PLAN(D);
    constexpr int C = 1 << D;
    const long long M = plan.out.count;
    const long long chunks = (channels + chunk - 1) / chunk;
    WT_GRID_STRIDE_LOOP(index, batch * chunks * M) {
        const long long v = index % M;
        const long long bc = index / M;
        const long long b = bc / chunks;
        const long long n_begin = (bc % chunks) * chunk;
        const long long n_end = n_begin + chunk < channels ? n_begin + chunk : channels;
        long long target[C];
        double weight[C];
        wt_scatter_entries<T, D>(eps, b, v, plan, padding, target, weight);
        for (long long n = n_begin; n < n_end; ++n) {
            const double value = (double)src[(b * channels + n) * M + v];
            T* o = out + (b * channels + n) * plan.in.count;
            WT_UNROLL
            for (int c = 0; c < C; ++c)
                if (target[c] != WT_NO_TARGET) atomicAdd(o + target[c], (T)(weight[c] * value));
        }
    }
}

#ifdef WT_EXPLICIT_INSTANTIATION
#define WT_INSTANTIATE(T, D)                                                                                     \
    template __global__ void wt_gather_kernel<T, D>(const T*, const T*, T*, long long, long long, WT_PLAN_ARGS,    \
                                                    int, long long);                                              \
    template __global__ void wt_position_derivative_kernel<T, D>(const T*, const T*, const T*, T*, long long,      \
                                                                 long long, WT_PLAN_ARGS, int);                   \
    template __global__ void wt_scatter_keys_kernel<T, D>(const T*, long long*, double*, long long, long long,     \
                                                          WT_PLAN_ARGS, int);                                     \
    template __global__ void wt_scatter_atomic_kernel<T, D>(const T*, const T*, T*, long long, long long,          \
                                                            WT_PLAN_ARGS, int, long long);
WT_INSTANTIATE(float, 1)
WT_INSTANTIATE(float, 2)
WT_INSTANTIATE(float, 3)
WT_INSTANTIATE(double, 1)
WT_INSTANTIATE(double, 2)
WT_INSTANTIATE(double, 3)
template __global__ void wt_scatter_gather_kernel<float>(const float*, float*, const long long*, const double*,
                                                         const long long*, long long, long long, long long,
                                                         long long, long long, long long);
template __global__ void wt_scatter_gather_kernel<double>(const double*, double*, const long long*, const double*,
                                                          const long long*, long long, long long, long long,
                                                          long long, long long, long long);
#undef WT_INSTANTIATE
#endif
