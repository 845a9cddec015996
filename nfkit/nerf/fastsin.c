/* The sine of float32 values with exact argument reduction, in one pass (nfkit.nerf.fastsin).
 *
 * The frequency encoding's high bands take sines of arguments up to 2^47 * pi. Vectorised
 * float32 sines fall back to a slow reduction above about 4e4; here every argument is reduced
 * exactly instead, so every value costs the same:
 *
 *  - |x| < 2^10: x - n * pi/2 in double, pi/2 split in two parts (Cody-Waite), n = rint(2x/pi);
 *  - otherwise x = M * 2^e with M the 24-bit integer mantissa; x / (pi/2) mod 4 is
 *    M * T[e] mod 2^64 in fixed point (T[e] = 2^(e+62) * 2/pi mod 2^64, from the caller), whose
 *    top two bits are the quadrant and whose other 62 bits are the remainder.
 *
 * sin and cos of the remainder (|r| <= pi/4) are Taylor polynomials in double (truncation below
 * 3e-14), so the float32 result is the correctly rounded sine in nearly every case.
 * Compiled at first use with the system's C compiler (nfkit/nerf/fastsin.py).
 */
#include <stdint.h>
#include <string.h>

#define TWO_OVER_PI 0x1.45f306dc9c883p-1
#define PIO2_HI 0x1.921fb544p+0
#define PIO2_LO 0x1.0b4611a626331p-34
#define FIX_TO_RAD 0x1.921fb54442d18p-62
#define ROUND_MAGIC 0x1.8p52
#define TABLE_MIN_EXP 137u /* biased float exponent of 2^10 */

static inline float sin_one(float xf, const uint64_t *table)
{
    uint32_t bits;
    memcpy(&bits, &xf, sizeof bits);
    uint32_t e = (bits >> 23) & 0xffu;

    /* small arguments */
    double x = (double)xf;
    double t = x * TWO_OVER_PI + ROUND_MAGIC;
    uint64_t tbits;
    memcpy(&tbits, &t, sizeof tbits); /* low mantissa bits: n mod 4 */
    double nd = t - ROUND_MAGIC;
    double rd = (x - nd * PIO2_HI) - nd * PIO2_LO;

    /* large arguments, fixed point */
    uint64_t m = (uint64_t)((bits & 0x7fffffu) | 0x800000u);
    uint64_t p = m * table[e] + (1ull << 61);
    int64_t rf = (int64_t)(p & ((1ull << 62) - 1u)) - (int64_t)(1ull << 61);
    double rt = (double)rf * FIX_TO_RAD;

    /* branch-free selections (bit masks), so that the loop vectorises */
    uint64_t big = (uint64_t)((e >= TABLE_MIN_EXP) & (e < 255u));
    uint64_t mask = 0u - big;
    uint64_t rdb, rtb;
    memcpy(&rdb, &rd, sizeof rdb);
    memcpy(&rtb, &rt, sizeof rtb);
    uint64_t rb = (rtb & mask) | (rdb & ~mask);
    double r;
    memcpy(&r, &rb, sizeof r);
    uint64_t q = (((p >> 62) & mask) | (tbits & ~mask)) & 3u;

    double z = r * r;
    double s = r + r * z * (-1.0 / 6 + z * (1.0 / 120 + z * (-1.0 / 5040 + z * (1.0 / 362880
               + z * (-1.0 / 39916800 + z * (1.0 / 6227020800.0))))));
    double c = 1.0 + z * (-0.5 + z * (1.0 / 24 + z * (-1.0 / 720 + z * (1.0 / 40320
               + z * (-1.0 / 3628800 + z * (1.0 / 479001600 + z * (-1.0 / 87178291200.0)))))));
    uint64_t odd = 0u - (q & 1u);
    uint64_t sb, cb;
    memcpy(&sb, &s, sizeof sb);
    memcpy(&cb, &c, sizeof cb);
    /* the sign: the quadrant's, flipped for negative arguments on the fixed-point path */
    uint64_t sign = (((q >> 1) & 1u) ^ (big & (uint64_t)(bits >> 31))) << 63;
    uint64_t resb = ((cb & odd) | (sb & ~odd)) ^ sign;
    double res;
    memcpy(&res, &resb, sizeof res);
    return (float)res;
}

/* out[i] = sin(in[i]) */
void nfkit_sin_f32(const float *in, float *out, int64_t n, const uint64_t *table)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = sin_one(in[i], table);
}
