/* nfkit's CPU kernels (nfkit.nerf.native).
 *
 * 1. nfkit_sin_f32: the sine of float32 values, every argument reduced exactly, in one pass.
 *
 * The frequency encoding's high bands take sines of arguments up to 2^47 * pi. Vectorised
 * float32 sines fall back to a slow reduction above about 4e4; here every argument costs the
 * same:
 *
 *  - |x| < 2^10: r = x - n pi/2 with n = rint(2x/pi) and pi/2 in three float parts
 *    (Cody-Waite with fused multiply-adds: the first step is exact);
 *  - otherwise x = M 2^e with M the 24-bit integer mantissa; x / (pi/2) mod 4 is M T mod 2^64
 *    in fixed point, T = floor(2^(e-88) 2/pi) mod 2^64, whose top two bits are the quadrant and
 *    whose other 62 bits are the remainder. T's two 32-bit halves are cut from the first 224
 *    bits of 2/pi (eight words, from the caller) by shifts, so no table is indexed per value.
 *
 * sin and cos of the remainder (|r| <= pi/4) are Taylor polynomials in float (truncation below
 * 2e-9), so the result is within 1.5 ulp of the correctly rounded sine, or about 6e-12 (2^-38 of
 * pi/2, where T ends) for the tiny sines of huge arguments (tests/nerf/test_native.py). The loop runs 8 values at a time with AVX2 and FMA, and the scalar code
 * (the tail, and machines without them) does the same operations in the same order: both give
 * the same bits. Compile with -ffp-contract=off (nfkit.nerf.native does) so that the compiler
 * fuses nothing the code does not.
 * 2. nfkit_hash_indices: the hash grid's table entries and trilinear weights of a level, bit
 *    for bit as nfkit.nerf.encodings computes them in torch (tiny-cuda-nn's arithmetic);
 *    nfkit_hash_gather / nfkit_hash_scatter: its interpolation and the gradient of that.
 *
 * Compiled at first use with the system's C compiler.
 */
#include <stdint.h>
#include <math.h>
#include <string.h>


#define SIN_MAGIC 0x1.8p23f          /* adding it rounds |v| < 2^22 to an integer */
#define SIN_TWO_OVER_PI 0x1.45f306p-1f
#define SIN_P1 0x1.921fb6p+0f         /* fl(pi/2) */
#define SIN_P2 (-0x1.777a5cp-25f)     /* fl(pi/2 - P1) */
#define SIN_P3 (-0x1.ee59dap-50f)     /* fl(pi/2 - P1 - P2) */
#define SIN_FIX 0x1.921fb6p-30f       /* 2^32 (high word) * 2^-62 (fixed point) * pi/2, rounded */
#define SIN_FIX_LO (-0x1.777a5cp-55f) /* what that rounding dropped */
#define SIN_FIX_24 0x1.921fb6p-54f    /* SIN_FIX * 2^-24 */
#define SIN_S3 (-0x1.555556p-3f)      /* -1/3! */
#define SIN_S5 0x1.111112p-7f         /* 1/5! */
#define SIN_S7 (-0x1.a01a02p-13f)     /* -1/7! */
#define SIN_S9 0x1.71de3ap-19f        /* 1/9! */
#define SIN_C4 0x1.555556p-5f         /* 1/4! */
#define SIN_C6 (-0x1.6c16c2p-10f)     /* -1/6! */
#define SIN_C8 0x1.a01a02p-16f        /* 1/8! */
#define SIN_C10 (-0x1.27e4fcp-22f)    /* -1/10! */
#define SIN_BIG_EXP 137u              /* biased float exponent of 2^10 */

static inline float f32_of(uint32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }
static inline uint32_t bits_of(float f) { uint32_t b; memcpy(&b, &f, sizeof b); return b; }

/* One value; the AVX2 loop below is this, 8 lanes at a time. */
static inline float sin_one(float x, const uint32_t *w)
{
    uint32_t bits = bits_of(x);
    uint32_t e = (bits >> 23) & 0xffu;
    /* small arguments */
    float t = fmaf(x, SIN_TWO_OVER_PI, SIN_MAGIC);
    float nf = t - SIN_MAGIC;
    float rs = fmaf(-nf, SIN_P1, x);
    rs = fmaf(-nf, SIN_P2, rs);
    rs = fmaf(-nf, SIN_P3, rs);
    /* large arguments: T's halves, the 32-bit windows of 2/pi ending at bits S-32 and S */
    int32_t s = (int32_t)e - 88;
    int32_t a = s >> 5, r = s & 31;
    uint32_t wa = w[a & 7], wn = w[(a + 1) & 7], wp = w[(a - 1) & 7];
    uint32_t tlo = (wa << r) | (r ? wn >> (32 - r) : 0u);
    uint32_t thi = (wp << r) | (r ? wa >> (32 - r) : 0u);
    uint32_t m = (bits & 0x7fffffu) | 0x800000u;
    uint64_t prod = (uint64_t)m * tlo;
    uint32_t plo = (uint32_t)prod;
    uint32_t phi = (uint32_t)(prod >> 32) + m * thi + (1u << 29); /* + 2^61: round the quadrant */
    int32_t vhi = (int32_t)(phi & 0x3fffffffu) - (1 << 29);
    /* the remainder v = vhi 2^32 + plo in two floats: hi, and what hi missed (in 2^8 units) */
    float hi = (float)vhi;
    float miss = (float)((vhi - (int32_t)hi) * (1 << 24) + (int32_t)(plo >> 8));
    float rb = fmaf(hi, SIN_FIX, fmaf(miss, SIN_FIX_24, hi * SIN_FIX_LO));
    int big = (e >= SIN_BIG_EXP) & (e < 255u);
    float rr = big ? rb : rs;
    uint32_t q = big ? phi >> 30 : bits_of(t);
    float z = rr * rr;
    float ps = fmaf(z, SIN_S9, SIN_S7);
    ps = fmaf(z, ps, SIN_S5);
    ps = fmaf(z, ps, SIN_S3);
    float sv = fmaf(rr * z, ps, rr);
    float pc = fmaf(z, SIN_C10, SIN_C8);
    pc = fmaf(z, pc, SIN_C6);
    pc = fmaf(z, pc, SIN_C4);
    pc = fmaf(z, pc, -0.5f);
    float cv = fmaf(z, pc, 1.0f);
    /* the sign: the quadrant's, flipped for negative arguments on the fixed-point path */
    uint32_t sign = (((q >> 1) & 1u) ^ ((uint32_t)big & (bits >> 31))) << 31;
    return f32_of(bits_of((q & 1u) ? cv : sv) ^ sign);
}

/* out[i] = sin(in[i]) (out may be in); words: the first 224 bits of 2/pi after the point,
 * words[k] = floor(2^(32k) 2/pi) mod 2^32 (words[0] = 0). */
void nfkit_sin_f32_scalar(const float *in, float *out, int64_t n, const uint32_t *words)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = sin_one(in[i], words);
}

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ALL1(v) _mm256_set1_epi32((int)(v))
#define ALLF(v) _mm256_set1_ps(v)
void nfkit_sin_f32(const float *in, float *out, int64_t n, const uint32_t *words)
{
    const __m256i w = _mm256_loadu_si256((const __m256i *)words);
    const __m256i seven = ALL1(7), one = ALL1(1), n32 = ALL1(32);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(in + i);
        __m256i bits = _mm256_castps_si256(x);
        __m256i e = _mm256_and_si256(_mm256_srli_epi32(bits, 23), ALL1(0xff));
        __m256 t = _mm256_fmadd_ps(x, ALLF(SIN_TWO_OVER_PI), ALLF(SIN_MAGIC));
        __m256 nf = _mm256_sub_ps(t, ALLF(SIN_MAGIC));
        __m256 rs = _mm256_fnmadd_ps(nf, ALLF(SIN_P1), x);
        rs = _mm256_fnmadd_ps(nf, ALLF(SIN_P2), rs);
        rs = _mm256_fnmadd_ps(nf, ALLF(SIN_P3), rs);
        __m256i s = _mm256_sub_epi32(e, ALL1(88));
        __m256i a = _mm256_srai_epi32(s, 5), r = _mm256_and_si256(s, ALL1(31));
        __m256i nr = _mm256_sub_epi32(n32, r); /* 32 when r = 0: the shift gives 0 */
        __m256i wa = _mm256_permutevar8x32_epi32(w, _mm256_and_si256(a, seven));
        __m256i wn = _mm256_permutevar8x32_epi32(w, _mm256_and_si256(_mm256_add_epi32(a, one), seven));
        __m256i wp = _mm256_permutevar8x32_epi32(w, _mm256_and_si256(_mm256_sub_epi32(a, one), seven));
        __m256i tlo = _mm256_or_si256(_mm256_sllv_epi32(wa, r), _mm256_srlv_epi32(wn, nr));
        __m256i thi = _mm256_or_si256(_mm256_sllv_epi32(wp, r), _mm256_srlv_epi32(wa, nr));
        __m256i m = _mm256_or_si256(_mm256_and_si256(bits, ALL1(0x7fffff)), ALL1(0x800000));
        __m256i even = _mm256_mul_epu32(m, tlo);
        __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(m, 32), _mm256_srli_epi64(tlo, 32));
        __m256i plo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
        __m256i lohi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
        __m256i phi = _mm256_add_epi32(_mm256_add_epi32(lohi, _mm256_mullo_epi32(m, thi)), ALL1(1u << 29));
        __m256i vhi = _mm256_sub_epi32(_mm256_and_si256(phi, ALL1(0x3fffffff)), ALL1(1 << 29));
        __m256 hi = _mm256_cvtepi32_ps(vhi);
        __m256i miss = _mm256_add_epi32(_mm256_slli_epi32(_mm256_sub_epi32(vhi, _mm256_cvttps_epi32(hi)), 24),
                                        _mm256_srli_epi32(plo, 8));
        __m256 rb = _mm256_fmadd_ps(hi, ALLF(SIN_FIX),
                                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(miss), ALLF(SIN_FIX_24), _mm256_mul_ps(hi, ALLF(SIN_FIX_LO))));
        __m256i big = _mm256_and_si256(_mm256_cmpgt_epi32(e, ALL1(SIN_BIG_EXP - 1)), _mm256_cmpgt_epi32(ALL1(255), e));
        __m256 rr = _mm256_blendv_ps(rs, rb, _mm256_castsi256_ps(big));
        __m256i q = _mm256_blendv_epi8(_mm256_castps_si256(t), _mm256_srli_epi32(phi, 30), big);
        __m256 z = _mm256_mul_ps(rr, rr);
        __m256 ps = _mm256_fmadd_ps(z, ALLF(SIN_S9), ALLF(SIN_S7));
        ps = _mm256_fmadd_ps(z, ps, ALLF(SIN_S5));
        ps = _mm256_fmadd_ps(z, ps, ALLF(SIN_S3));
        __m256 sv = _mm256_fmadd_ps(_mm256_mul_ps(rr, z), ps, rr);
        __m256 pc = _mm256_fmadd_ps(z, ALLF(SIN_C10), ALLF(SIN_C8));
        pc = _mm256_fmadd_ps(z, pc, ALLF(SIN_C6));
        pc = _mm256_fmadd_ps(z, pc, ALLF(SIN_C4));
        pc = _mm256_fmadd_ps(z, pc, ALLF(-0.5f));
        __m256 cv = _mm256_fmadd_ps(z, pc, ALLF(1.0f));
        __m256i isodd = _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one);
        __m256 v = _mm256_blendv_ps(sv, cv, _mm256_castsi256_ps(isodd));
        __m256i neg = _mm256_and_si256(big, _mm256_srli_epi32(bits, 31));
        __m256i sign = _mm256_slli_epi32(_mm256_xor_si256(_mm256_and_si256(_mm256_srli_epi32(q, 1), one), neg), 31);
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(v), sign)));
    }
    nfkit_sin_f32_scalar(in + i, out + i, n - i, words);
}
#else
void nfkit_sin_f32(const float *in, float *out, int64_t n, const uint32_t *words)
{
    nfkit_sin_f32_scalar(in, out, n, words);
}
#endif

/* Table entries (int32) and trilinear weights of the 8 corners of one level for n_points
 * positions u (n_points x 3): entries[8p + k] = offset + (index of corner k in the level),
 * weights[8p + k] likewise. The caller adds each NeRF's table offset.
 *
 * tiny-cuda-nn's arithmetic: pos = fmaf(scale, u, 0.5f) (exact in double, rounded once),
 * vertex = floor(pos), frac = pos - vertex; corner k = xbit + 2 ybit + 4 zbit has weight
 * (wx * wy) * wz; its index is x + y res + z res^2 (dense) or x ^ y p1 ^ z p2 (hashed), in
 * uint32 arithmetic, modulo the level size. */
void nfkit_hash_indices(const float *u, int64_t n_points, double scale, uint32_t res, uint32_t size,
                        int64_t offset, int32_t dense, int32_t *entries, float *weights)
{
    const uint32_t p1 = 2654435761u, p2 = 805459861u;
    const uint32_t f1 = dense ? res : p1, f2 = dense ? res * res : p2;
    for (int64_t p = 0; p < n_points; ++p) {
        uint32_t v[3];
        float w[3][2];
        for (int d = 0; d < 3; ++d) {
            float pos = (float)((double)u[3 * p + d] * scale + 0.5);
            float base = floorf(pos);
            float frac = pos - base;
            v[d] = (uint32_t)(int64_t)base;
            w[d][0] = 1.0f - frac;
            w[d][1] = frac;
        }
        for (int k = 0; k < 8; ++k) {
            uint32_t x = v[0] + (uint32_t)(k & 1), y = v[1] + (uint32_t)((k >> 1) & 1),
                     z = v[2] + (uint32_t)((k >> 2) & 1);
            uint32_t idx = dense ? x + y * f1 + z * f2 : x ^ (y * f1) ^ (z * f2);
            entries[8 * p + k] = (int32_t)(idx % size + offset);
            weights[8 * p + k] = (w[0][k & 1] * w[1][(k >> 1) & 1]) * w[2][(k >> 2) & 1];
        }
    }
}

/* The hash grid's interpolation: out[r * nf + f] = sum_k table[entries[8r + k] * nf + f] * w[8r + k]
 * for rows r < n_rows (the corners summed in order k = 0..7). */
void nfkit_hash_gather(const float *table, const int32_t *entries, const float *weights,
                       int64_t n_rows, int64_t nf, float *out)
{
    for (int64_t r = 0; r < n_rows; ++r) {
        for (int64_t f = 0; f < nf; ++f) {
            float acc = 0.0f;
            for (int k = 0; k < 8; ++k)
                acc += table[(int64_t)entries[8 * r + k] * nf + f] * weights[8 * r + k];
            out[r * nf + f] = acc;
        }
    }
}

/* Its gradient with respect to the table: acc[entries[8r + k] * nf + f] +=
 * grad[r * nf + f] * w[8r + k] in double, in row order (deterministic), for rows r < n_rows.
 * The caller runs levels (whose entries are disjoint) in parallel and zeroes acc. */
void nfkit_hash_scatter(const float *grad, const int32_t *entries, const float *weights,
                        int64_t n_rows, int64_t nf, double *acc)
{
    for (int64_t r = 0; r < n_rows; ++r) {
        for (int k = 0; k < 8; ++k) {
            int64_t e = (int64_t)entries[8 * r + k] * nf;
            double w = (double)weights[8 * r + k];
            for (int64_t f = 0; f < nf; ++f)
                acc[e + f] += (double)grad[r * nf + f] * w;
        }
    }
}
