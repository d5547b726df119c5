package graph

// Limits bound what decoding accepts from untrusted bytes. Every size is
// checked against them before anything is allocated from it. A zero (or
// negative) field means the DefaultLimits value of that field.
type Limits struct {
	MaxBytes        int64 // length of the encoded graph
	MaxNodes        int   // nodes in the graph
	MaxRank         int   // dimensions of one shape (a node's or a tensor's)
	MaxElements     int64 // elements of one shape or tensor: the product of its dimensions
	MaxAttrs        int   // attributes of one node
	MaxAttrElements int   // values of one list attribute (ints, floats, shape, axes), or bytes of a string attribute
	MaxInputs       int   // inputs of one node
	MaxNameLen      int   // bytes of a node name, an op kind or an attribute name
}

// DefaultLimits are the limits that UnmarshalBinary applies and that Decode
// uses for any zero field of the Limits it is given. It is a copy for
// reference: changing it changes nothing; pass Limits to Decode instead.
var DefaultLimits = defaultLimits

var defaultLimits = Limits{
	MaxBytes:        1 << 30,
	MaxNodes:        1 << 22,
	MaxRank:         8,
	MaxElements:     1 << 31,
	MaxAttrs:        64,
	MaxAttrElements: 1 << 16,
	MaxInputs:       1 << 16,
	MaxNameLen:      1024,
}

// orDefault fills the zero fields of l from the default limits.
func (l Limits) orDefault() Limits {
	d := defaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxNodes > 0 {
		d.MaxNodes = l.MaxNodes
	}
	if l.MaxRank > 0 {
		d.MaxRank = l.MaxRank
	}
	if l.MaxElements > 0 {
		d.MaxElements = l.MaxElements
	}
	if l.MaxAttrs > 0 {
		d.MaxAttrs = l.MaxAttrs
	}
	if l.MaxAttrElements > 0 {
		d.MaxAttrElements = l.MaxAttrElements
	}
	if l.MaxInputs > 0 {
		d.MaxInputs = l.MaxInputs
	}
	if l.MaxNameLen > 0 {
		d.MaxNameLen = l.MaxNameLen
	}
	return d
}
