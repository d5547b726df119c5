package graph

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// DOTOption configures WriteDOTWith.
type DOTOption func(*dotConfig)

type dotConfig struct {
	group func(id int64) (int, bool)
}

// DOTGroups fills each node with the colour of the group that f assigns
// it, for instance the part a partition plan puts it in; nodes for which f
// reports false stay unfilled. Group g gets colour g modulo the length of a
// fixed palette of 12 colours (ColorBrewer's Set3), so groups 0 and 12
// share a colour.
func DOTGroups(f func(id int64) (group int, ok bool)) DOTOption {
	return func(c *dotConfig) { c.group = f }
}

// dotPalette is ColorBrewer's 12-class Set3, light enough for black text.
var dotPalette = [...]string{
	"#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462",
	"#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f",
}

// WriteDOT writes the graph in Graphviz's DOT language; see WriteDOTWith.
func (g *Graph) WriteDOT(w io.Writer) error { return g.WriteDOTWith(w) }

// WriteDOTWith writes the graph in Graphviz's DOT language, nodes and then
// edges in graph order, so that equal graphs give equal bytes. A node's
// label holds its kind (its role for inputs, learnable parameters and
// constants), its name if it has one, and its shape and dtype. Inputs are
// drawn as inverted houses, learnable parameters as cylinders, constants as
// notes and ops as rounded boxes; an edge runs from each input to its
// consumer, once per listed input. It returns the first error from w.
func (g *Graph) WriteDOTWith(w io.Writer, opts ...DOTOption) error {
	var c dotConfig
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("digraph rookery {\n")
	bw.WriteString("\tnode [fontname=\"Helvetica\", fontsize=10];\n")
	bw.WriteString("\tedge [color=\"#555555\"];\n")
	for i := range g.nodes {
		n := &g.nodes[i]
		shape, style := dotShape(n.Role)
		fill := ""
		if c.group != nil {
			if grp, ok := c.group(n.ID); ok {
				fill = dotPalette[((grp%len(dotPalette))+len(dotPalette))%len(dotPalette)]
				style = strings.TrimPrefix(style+",filled", ",")
			}
		}
		fmt.Fprintf(bw, "\t%s [label=\"%s\", shape=%s", dotID(n.ID), dotLabel(n), shape)
		if style != "" {
			fmt.Fprintf(bw, ", style=\"%s\"", style)
		}
		if fill != "" {
			fmt.Fprintf(bw, ", fillcolor=\"%s\"", fill)
		}
		bw.WriteString("];\n")
	}
	for i := range g.nodes {
		n := &g.nodes[i]
		for _, in := range n.Inputs {
			fmt.Fprintf(bw, "\t%s -> %s;\n", dotID(in), dotID(n.ID))
		}
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func dotShape(r Role) (shape, style string) {
	switch r {
	case RoleInput:
		return "invhouse", ""
	case RoleLearnable:
		return "cylinder", ""
	case RoleConstant:
		return "note", ""
	}
	return "box", "rounded"
}

// dotID is a node's DOT identifier, quoted so that negative ids are valid.
func dotID(id int64) string { return fmt.Sprintf("\"n%d\"", id) }

// dotLabel is the escaped label text: kind, name, shape and dtype, one per
// line.
func dotLabel(n *Node) string {
	kind := string(n.Op.Kind)
	if n.Role != RoleOp {
		kind = n.Role.String()
	}
	parts := []string{dotEscape(kind)}
	if n.Name != "" {
		parts = append(parts, dotEscape(n.Name))
	}
	parts = append(parts, dotEscape(dotShapeText(n.Shape)+" "+n.DType.String()))
	return strings.Join(parts, `\n`)
}

// dotShapeText writes (64, 784), or () for a scalar.
func dotShapeText(s Shape) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, d)
	}
	b.WriteByte(')')
	return b.String()
}

// dotEscape makes s safe inside a double-quoted DOT string: backslashes
// and quotes are escaped, line breaks become centred line breaks.
func dotEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
