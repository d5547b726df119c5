// Package compress encodes and decodes the parameter deltas that local-SGD
// replicas exchange between rounds: a provider sends the change its h inner
// steps made to its parameters, and the requester sends back the outer
// update that every replica applies before the next round.
//
// A delta is a flat slice of float64. Encode turns it into bytes with one
// of four codecs, chosen by the caller for its link: Float64 (lossless),
// Float32, Float16 (IEEE 754 binary16, round to nearest even, saturating
// at ±65504), or Int8 (per block of BlockSize values, one float32 scale
// max|v|/127 and one int8 per value). Decode and DecodeInto turn the bytes
// back into values. The lossy codecs drop what rounding loses; error
// feedback (keeping that remainder and adding it to the next round's
// delta) is the caller's, not this package's.
//
// Wire format, little-endian: an 8-byte header, then the payload.
//
//	offset 0  'R' 'D'       magic
//	offset 2  1             version
//	offset 3  codec         1 float64, 2 float32, 3 float16, 4 int8
//	offset 4  count         uint32, the number of values
//	offset 8  payload       Float64: count × 8 bytes (IEEE 754 binary64)
//	                        Float32: count × 4 bytes (binary32)
//	                        Float16: count × 2 bytes (binary16)
//	                        Int8: for each block of BlockSize values (the
//	                        last may be shorter), a float32 scale then one
//	                        int8 per value, decoded as scale × q
//
// Size gives the exact length of an encoding. Every encoding is canonical:
// a payload that Decode accepts re-encodes, with its codec, to the same
// bytes. For Int8 that means a block's scale is zero with all its values
// zero, or a normal float32 with at least one value ±127, and no value is
// -128; Encode writes a block whose largest magnitude is below 127×2⁻¹²⁶
// (about 1.5e-36) as zeros.
//
// Error policy: Encode returns an error wrapping ErrInvalid for an unknown
// codec (also wrapping ErrUnknownCodec) or a NaN or infinite value, and
// naming its index; finite values beyond a codec's range saturate to its
// largest finite value. Decode reads bytes from the network and trusts
// none of them: any defect (short or long input, wrong magic, version or
// codec, a count other than the one wanted, a non-finite value, a
// non-canonical Int8 block) is a *FormatError, which wraps ErrMalformed
// and gives the byte offset. Decode never panics and checks the input's
// length against the count before it allocates.
package compress
