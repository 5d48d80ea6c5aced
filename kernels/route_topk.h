/* torch.topk's choice among equal values, for the MoE router (decoder.md §6),
 * shared by the CPU ops (cpu_act.c) and the CUDA router (cuda_moe.cu) so both
 * keep the same experts when bf16 router logits tie.
 *
 * bf16 router logits tie often. torch.topk on the CPU (k * 64 > n) runs
 * std::nth_element (libstdc++ introselect) on (value, index) pairs ordered by
 * value only, so which of equal values it keeps depends on their positions.
 * These helpers redo that selection step by step on an index array. */
#ifndef MVL_ROUTE_TOPK_H
#define MVL_ROUTE_TOPK_H

#include <stdbool.h>

#ifdef __CUDACC__
#define MVL_HD static inline __host__ __device__
#else
#define MVL_HD static inline
#endif

/* The largest n mvl_topk_torch_order handles; torch only selects this way
 * for k * 64 > n. */
#define MVL_TOPK_TORCH_MAX 256

MVL_HD bool mvl_sel_gt(const float *v, const int *a, int i, int j) { return v[a[i]] > v[a[j]]; }

MVL_HD void mvl_sel_swap(int *a, int i, int j) {
    int t = a[i];
    a[i] = a[j];
    a[j] = t;
}

MVL_HD void mvl_sel_median_to_first(const float *v, int *a, int r, int i, int j, int k) {
    if (mvl_sel_gt(v, a, i, j)) {
        if (mvl_sel_gt(v, a, j, k)) mvl_sel_swap(a, r, j);
        else if (mvl_sel_gt(v, a, i, k)) mvl_sel_swap(a, r, k);
        else mvl_sel_swap(a, r, i);
    } else if (mvl_sel_gt(v, a, i, k)) mvl_sel_swap(a, r, i);
    else if (mvl_sel_gt(v, a, j, k)) mvl_sel_swap(a, r, k);
    else mvl_sel_swap(a, r, j);
}

MVL_HD int mvl_sel_partition(const float *v, int *a, int f, int l, int pivot) {
    for (;;) {
        while (mvl_sel_gt(v, a, f, pivot)) f++;
        l--;
        while (mvl_sel_gt(v, a, pivot, l)) l--;
        if (!(f < l)) return f;
        mvl_sel_swap(a, f, l);
        f++;
    }
}

MVL_HD void mvl_sel_insertion_sort(const float *v, int *a, int f, int l) {
    for (int i = f + 1; i < l; i++) {
        int x = a[i];
        if (v[x] > v[a[f]]) {
            for (int j = i; j > f; j--) a[j] = a[j - 1];
            a[f] = x;
        } else {
            int j = i;
            while (v[x] > v[a[j - 1]]) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
    }
}

/* The k largest of v[0..n) in a[0..k), in the order torch.topk returns them
 * (n <= MVL_TOPK_TORCH_MAX; a holds n ints of scratch). */
MVL_HD void mvl_topk_torch_order(const float *v, int n, int k, int *a) {
    for (int i = 0; i < n; i++) a[i] = i;
    int f = 0, l = n, nth = k - 1;
    while (l - f > 3) { /* the depth limit (2 log2 n) is never reached for n this small */
        int mid = f + (l - f) / 2;
        mvl_sel_median_to_first(v, a, f, f + 1, mid, l - 1);
        int cut = mvl_sel_partition(v, a, f + 1, l, f);
        if (cut <= nth) f = cut;
        else l = cut;
    }
    mvl_sel_insertion_sort(v, a, f, l);
    mvl_sel_insertion_sort(v, a, 0, k - 1); /* torch sorts the first k - 1 (std::sort: insertion sort when short) */
}

#undef MVL_HD
#endif
