#!/usr/bin/env python3
# Usage: python3 bench/ct_unpack_check.py CT_DIR FAKEQUANT_DIR LINEAR  (4-bit, F32 scales: export --dtype float32)
# Independent check: unpack one exported linear with compressed-tensors' unpack_from_int32 rule
# (unpacked[:, i::pf] = (value >> (bits*i)) & mask; minus 2^(bits-1)) and compare q*scale with
# kurtail's fake-quant weight in the source directory.
import json, struct, sys
def load(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); base = 8+n
    return h, b, base
def get(h, b, base, name):
    t = h[name]; s, e = t['data_offsets']; raw = b[base+s:base+e]
    fmt = {'F32': 'f', 'I32': 'i', 'I64': 'q', 'F16': 'e'}[t['dtype']]
    return t['shape'], struct.unpack('<%d%s' % (len(raw)//struct.calcsize(fmt), fmt), raw)
ct, q, name = sys.argv[1], sys.argv[2], sys.argv[3]
h, b, base = load(ct + '/model.safetensors'); hq, bq, baseq = load(q + '/model.safetensors')
(out, pc), packed = get(h, b, base, name + '.weight_packed')
_, shape = get(h, b, base, name + '.weight_shape'); (o2, G), scale = get(h, b, base, name + '.weight_scale')
_, w = get(hq, bq, baseq, name + '.weight')
bits = 4; pf = 32 // bits; mask = (1 << bits) - 1; inn = shape[1]
bad = 0
for r in range(out):
    row = [0] * (pc * pf)
    for i in range(pf):
        for c in range(pc):
            row[c * pf + i] = ((packed[r * pc + c] & 0xffffffff) >> (bits * i)) & mask
    for c in range(inn):
        v = (row[c] - (1 << (bits - 1))) * scale[r * G + c // (inn // G)]
        v = struct.unpack('<f', struct.pack('<f', v))[0]
        if v != w[r * inn + c]: bad += 1
print(name, 'shape', list(shape), 'packed', [out, pc], 'mismatches', bad)
