package exec

import (
	"reflect"

	"gorgonia.org/gorgonia"
)

// Resident inputs (a data shard kept on the executor) can be large: a
// copy into the slot's input buffer on every Forward costs as much memory
// traffic as the shard's size. A slot binds a resident tensor to its input
// node directly instead, but only where the compiled program never writes
// into that input's memory.
//
// Gorgonia's tape machine may do exactly that: an op that returns a
// pointer and overwrites its first argument (elementwise arithmetic on
// tensors) is given the register of an argument whose last use it is, and
// then writes its result into the argument's tensor in place. A copied
// buffer tolerates it (the next Forward copies again); a resident tensor
// bound directly would be corrupted. argsWritten reads the compiled
// program to tell the two cases apart.

// argsWritten returns the Gorgonia node ids of the arguments whose
// register an instruction of m's program writes after loading them. ok is
// false when the program cannot be read (a VM other than Gorgonia
// v0.9.18's tape machine); callers then treat every argument as written.
func argsWritten(m gorgonia.VM) (written map[int64]bool, ok bool) {
	defer func() {
		if recover() != nil { // a field or method not as expected
			written, ok = nil, false
		}
	}()
	prog := reflect.ValueOf(m).MethodByName("Prog")
	if !prog.IsValid() {
		return nil, false
	}
	p := prog.Call(nil)[0]
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return nil, false
	}
	instrs := p.Elem().FieldByName("instructions")
	if !instrs.IsValid() || instrs.Kind() != reflect.Slice {
		return nil, false
	}
	type reg struct{ id, dev int64 }
	regOf := func(v reflect.Value) (reg, bool) {
		if !v.IsValid() || v.Kind() != reflect.Struct {
			return reg{}, false
		}
		id, dev := v.FieldByName("id"), v.FieldByName("device")
		if !id.IsValid() || !dev.IsValid() {
			return reg{}, false
		}
		return reg{id.Int(), dev.Int()}, true
	}
	loaded := make(map[reg]int64) // register → argument node id
	written = make(map[int64]bool)
	for i := 0; i < instrs.Len(); i++ {
		in := instrs.Index(i)
		for in.Kind() == reflect.Interface || in.Kind() == reflect.Pointer {
			if in.IsNil() {
				return nil, false
			}
			in = in.Elem()
		}
		if in.Kind() != reflect.Struct {
			return nil, false
		}
		if in.Type().Name() == "loadArg" {
			r, ok := regOf(in.FieldByName("writeTo"))
			idx := in.FieldByName("index")
			if !ok || !idx.IsValid() {
				return nil, false
			}
			if prev, dup := loaded[r]; dup { // two arguments share a register
				written[prev] = true
				written[idx.Int()] = true
			}
			loaded[r] = idx.Int()
			continue
		}
		for _, f := range []string{"writeTo", "to"} {
			if r, ok := regOf(in.FieldByName(f)); ok {
				if id, isArg := loaded[r]; isArg {
					written[id] = true
				}
			}
		}
	}
	return written, true
}
