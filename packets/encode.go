package packets

func (p *Hello) appendPayload(b []byte) []byte {
	b = appendU16(b, p.Version)
	b = append(b, p.Client[:]...)
	b = appendU64(b, p.Capabilities)
	return appendStr(b, p.Token)
}

func (p *Welcome) appendPayload(b []byte) []byte {
	b = appendU16(b, p.Version)
	b = append(b, p.Session[:]...)
	b = appendU64(b, p.Capabilities)
	b = appendU32(b, p.Limits.MaxChunk)
	b = appendU32(b, p.Limits.MaxPacket)
	b = appendU32(b, p.Limits.MaxRequestHashes)
	b = appendU32(b, p.Limits.MaxPending)
	return appendU32(b, p.Limits.PingIntervalMs)
}

func (p *Bind) appendPayload(b []byte) []byte {
	b = appendUvarint(b, uint64(len(p.Entries)))
	for _, e := range p.Entries {
		b = append(b, byte(e.Type))
		b = appendU32(b, uint32(e.ID))
		b = appendRef(b, e.Ref)
		b = append(b, e.Hash[:]...)
		b = appendU64(b, e.Size)
	}
	return b
}

func (p *Lost) appendPayload(b []byte) []byte {
	b = appendUvarint(b, uint64(len(p.Entries)))
	for _, e := range p.Entries {
		b = append(b, byte(e.Type))
		b = appendU32(b, uint32(e.ID))
	}
	return b
}

func (p *ResourceRequest) appendPayload(b []byte) []byte {
	b = appendUvarint(b, uint64(len(p.Wants)))
	for _, w := range p.Wants {
		b = append(b, w.Hash[:]...)
		b = append(b, w.Priority)
		var flags byte
		if w.HasRange {
			flags |= RequestFlagRange
		}
		if w.Manifest {
			flags |= RequestFlagManifest
		}
		if w.Raise {
			flags |= RequestFlagRaise
		}
		b = append(b, flags)
		if w.HasRange {
			b = appendU64(b, w.Offset)
			b = appendU64(b, w.Length)
		}
	}
	return b
}

func (p *ResourceCancel) appendPayload(b []byte) []byte {
	b = appendUvarint(b, uint64(len(p.Hashes)))
	for _, h := range p.Hashes {
		b = append(b, h[:]...)
	}
	return b
}

func (p *InitResSend) appendPayload(b []byte) []byte {
	b = appendU32(b, p.Stream)
	b = append(b, p.Hash[:]...)
	b = appendU64(b, p.Size)
	b = appendU64(b, p.Offset)
	b = appendU64(b, p.Length)
	b = append(b, byte(p.AssetType))
	b = appendU32(b, uint32(p.ID))
	b = appendRef(b, p.Ref)
	b = append(b, byte(p.Encoding))
	if p.Encoding != EncodingRaw {
		b = appendU64(b, p.EncodedLength)
	}
	return b
}

// ChunkHeaderSize is the encoded size of a ChunkSend without its payload.
const ChunkHeaderSize = 1 + 4 + 8 + 1

func (p *ChunkSend) appendPayload(b []byte) []byte {
	b = appendU32(b, p.Stream)
	b = appendU64(b, p.Offset)
	var flags byte
	if p.Last {
		flags |= ChunkFlagLast
	}
	b = append(b, flags)
	return append(b, p.Data...)
}

func (p *ResourceError) appendPayload(b []byte) []byte {
	b = append(b, p.Hash[:]...)
	b = append(b, byte(p.Code))
	return appendStr(b, p.Message)
}

func (p *Disconnect) appendPayload(b []byte) []byte {
	b = append(b, byte(p.Code))
	return appendStr(b, p.Reason)
}

func (p *Move) appendPayload(b []byte) []byte {
	b = appendU32(b, p.Seq)
	b = appendF64(b, p.X)
	b = appendF64(b, p.Y)
	b = appendF64(b, p.Z)
	b = appendF32(b, p.Yaw)
	return appendF32(b, p.Pitch)
}

func (p *BindsDone) appendPayload(b []byte) []byte { return appendU32(b, p.Seq) }

func (p *Manifest) appendPayload(b []byte) []byte {
	b = append(b, p.Hash[:]...)
	b = appendU64(b, p.Size)
	b = appendU32(b, p.Total)
	b = appendU32(b, p.First)
	b = appendUvarint(b, uint64(len(p.Chunks)))
	for _, c := range p.Chunks {
		b = appendU32(b, c.Length)
		b = append(b, c.Hash[:]...)
		b = append(b, c.Chain[:]...)
		b = append(b, byte(len(c.Carry)))
		b = append(b, c.Carry...)
	}
	return b
}

func (p *Mirrors) appendPayload(b []byte) []byte {
	var flags byte
	if p.Help {
		flags |= MirrorsFlagHelp
	}
	b = append(b, flags)
	b = appendUvarint(b, uint64(len(p.URLs)))
	for _, u := range p.URLs {
		b = appendStr(b, u)
	}
	return b
}

func (p *MirrorReport) appendPayload(b []byte) []byte {
	b = appendU64(b, p.Bytes)
	return appendU32(b, p.Objects)
}
