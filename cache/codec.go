package cache

import "encoding/json"

// Codec turns values into bytes for Redis and back. Config.Codec nil means encoding/json;
// values of type []byte and string are stored as they are, without a codec.
//
// Unmarshal must accept what Marshal of the same Codec produced. Changing the codec of a cache
// whose data is already in Redis is safe: an entry that does not decode counts as a miss and is
// loaded and stored again. A Codec is called from many goroutines at once: it must be safe for
// concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// jsonCodec is the default Codec, encoding/json.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
