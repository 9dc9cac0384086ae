//! The canonical JSON writer: OLPC canonical form straight from any
//! `Serialize` value, into one buffer.
//!
//! `olpc-cjson` (the reference, kept as a dev-dependency) buffers every
//! object entry in its own key and value vectors and a `BTreeMap`, then
//! copies them out: several allocations per entry at every level. Here
//! entries are written in place, in the order serde produces them; an
//! object is rewritten only if its keys did not arrive sorted (a struct's
//! fields), and then only that object's bytes move once. Typed maps
//! (`BTreeMap<String, _>`) arrive sorted and are never moved.
//!
//! The output is byte-identical to `olpc-cjson`'s (a differential property
//! test in `tests/cjson_writer.rs` holds it to that):
//! - strings are NFC-normalised, only `"` and `\` are escaped, every other
//!   byte (control characters too) is written raw;
//! - object keys are sorted by their serialised bytes *including the
//!   quotes* (so `"a!"` sorts before `"a"`), and of equal keys the last one
//!   wins;
//! - integers as serde_json writes them; floats are refused, naming the
//!   path of the field (`signed.targets["fw.bin"].custom.ratio`).

use std::fmt::Write as _;

use serde::ser::{self, Serialize};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Why a value has no canonical form (the path is filled in by [`write`]).
#[derive(Debug)]
pub(crate) struct CanonError {
    pub(crate) path: String,
    pub(crate) reason: String,
}

impl std::fmt::Display for CanonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for CanonError {}

impl ser::Error for CanonError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonError {
            path: String::new(),
            reason: msg.to_string(),
        }
    }
}

/// Where the writer is: the key of each open object entry (a byte range of
/// the output, quotes included) or the index in each open array.
enum Seg {
    Key(usize, usize),
    Index(usize),
}

struct Canon {
    out: Vec<u8>,
    path: Vec<Seg>,
}

/// Canonical JSON of `value`.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonError> {
    let mut c = Canon {
        out: Vec::with_capacity(256),
        path: Vec::new(),
    };
    match value.serialize(&mut c) {
        Ok(()) => Ok(c.out),
        Err(mut e) => {
            if e.path.is_empty() {
                e.path = c.path_text();
            }
            Err(e)
        }
    }
}

impl Canon {
    fn fail(&self, reason: &str) -> CanonError {
        CanonError {
            path: self.path_text(),
            reason: reason.to_owned(),
        }
    }

    /// `a.b[3]["x y"]` of the open entries.
    fn path_text(&self) -> String {
        let mut p = String::new();
        for s in &self.path {
            match s {
                Seg::Index(i) => {
                    let _ = write!(p, "[{i}]");
                }
                Seg::Key(a, b) => {
                    let raw = self
                        .out
                        .get(a + 1..b.saturating_sub(1))
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    let plain = !raw.is_empty()
                        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if plain {
                        if !p.is_empty() {
                            p.push('.');
                        }
                        p.push_str(&raw);
                    } else {
                        let _ = write!(p, "[{raw:?}]");
                    }
                }
            }
        }
        p
    }

    fn string(&mut self, s: &str) {
        self.out.push(b'"');
        if is_nfc_quick(s.chars()) == IsNormalized::Yes {
            escape_into(&mut self.out, s);
        } else {
            let n: String = s.nfc().collect();
            escape_into(&mut self.out, &n);
        }
        self.out.push(b'"');
    }

    fn integer(&mut self, v: impl itoa::Integer) {
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(v).as_bytes());
    }
}

/// `s` with `"` and `\` escaped; every other byte as is (OLPC).
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' {
            out.extend_from_slice(bytes.get(from..i).unwrap_or_default());
            out.push(b'\\');
            out.push(b);
            from = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(from..).unwrap_or_default());
}

/// An open array.
struct Array<'a> {
    c: &'a mut Canon,
    n: usize,
}

impl<'a> Array<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
        if self.n > 0 {
            self.c.out.push(b',');
        }
        self.c.path.push(Seg::Index(self.n));
        v.serialize(&mut *self.c)?;
        self.c.path.pop();
        self.n += 1;
        Ok(())
    }

    fn end(self) -> &'a mut Canon {
        self.c.out.push(b']');
        self.c
    }
}

/// An open object: entries `key:value` written in arrival order, their
/// byte ranges kept to sort them at the end.
struct Object<'a> {
    c: &'a mut Canon,
    /// where the first entry starts (after `{`)
    start: usize,
    /// (key start, key end, entry end) of each entry
    entries: Vec<(usize, usize, usize)>,
    /// the key written by `serialize_key`, waiting for its value
    pending: Option<(usize, usize)>,
}

impl<'a> Object<'a> {
    fn open(c: &'a mut Canon) -> Object<'a> {
        c.out.push(b'{');
        let start = c.out.len();
        Object {
            c,
            start,
            entries: Vec::new(),
            pending: None,
        }
    }

    fn key<K: Serialize + ?Sized>(&mut self, k: &K) -> Result<(), CanonError> {
        if !self.entries.is_empty() {
            self.c.out.push(b',');
        }
        let ks = self.c.out.len();
        k.serialize(KeySer(&mut *self.c))?;
        let ke = self.c.out.len();
        self.c.out.push(b':');
        self.pending = Some((ks, ke));
        Ok(())
    }

    fn value<V: Serialize + ?Sized>(&mut self, v: &V) -> Result<(), CanonError> {
        let (ks, ke) = self
            .pending
            .take()
            .ok_or_else(|| self.c.fail("a map value without its key"))?;
        self.c.path.push(Seg::Key(ks, ke));
        v.serialize(&mut *self.c)?;
        self.c.path.pop();
        self.entries.push((ks, ke, self.c.out.len()));
        Ok(())
    }

    fn field<V: Serialize + ?Sized>(&mut self, name: &str, v: &V) -> Result<(), CanonError> {
        self.key(name)?;
        self.value(v)
    }

    /// Sort the entries by key bytes if they did not arrive sorted (equal
    /// keys: the last wins), then close the object.
    fn end(self) -> Result<&'a mut Canon, CanonError> {
        let out = &mut self.c.out;
        let key = |e: &(usize, usize, usize)| out.get(e.0..e.1).unwrap_or_default();
        let sorted = self.entries.windows(2).all(|w| match w {
            [a, b] => key(a) < key(b),
            _ => true,
        });
        if !sorted {
            let mut order: Vec<usize> = (0..self.entries.len()).collect();
            order.sort_by(|&a, &b| {
                let (ea, eb) = (&self.entries[a], &self.entries[b]);
                key(ea).cmp(key(eb))
            });
            // of a run of equal keys, keep the last (stable sort: arrival order)
            let mut kept: Vec<usize> = Vec::with_capacity(order.len());
            for i in order {
                if let Some(&last) = kept.last() {
                    if key(&self.entries[last]) == key(&self.entries[i]) {
                        kept.pop();
                    }
                }
                kept.push(i);
            }
            let mut body = Vec::with_capacity(out.len() - self.start);
            for (n, &i) in kept.iter().enumerate() {
                let (ks, _, end) = self.entries[i];
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(out.get(ks..end).unwrap_or_default());
            }
            out.truncate(self.start);
            out.extend_from_slice(&body);
        }
        out.push(b'}');
        Ok(self.c)
    }
}

macro_rules! integers {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), CanonError> {
            self.integer(v);
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Canon {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Variant<Array<'a>>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Variant<Object<'a>>;

    integers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);

    fn serialize_bool(self, v: bool) -> Result<(), CanonError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), CanonError> {
        Err(self.fail("floating point numbers are not allowed in canonical JSON"))
    }
    fn serialize_f64(self, _: f64) -> Result<(), CanonError> {
        Err(self.fail("floating point numbers are not allowed in canonical JSON"))
    }
    fn serialize_char(self, v: char) -> Result<(), CanonError> {
        self.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonError> {
        self.string(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonError> {
        // as serde_json: an array of numbers
        self.out.push(b'[');
        let mut a = Array { c: self, n: 0 };
        for b in v {
            a.element(b)?;
        }
        a.end();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), CanonError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), CanonError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonError> {
        self.string(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        let mut o = Object::open(self);
        o.field(variant, v)?;
        o.end().map(drop)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, CanonError> {
        self.out.push(b'[');
        Ok(Array { c: self, n: 0 })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, CanonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, CanonError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<Array<'a>>, CanonError> {
        Variant::open(self, variant, |c| {
            c.out.push(b'[');
            Array { c, n: 0 }
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, CanonError> {
        Ok(Object::open(self))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, CanonError> {
        Ok(Object::open(self))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<Object<'a>>, CanonError> {
        Variant::open(self, variant, Object::open)
    }
}

/// Sequences, tuples and tuple structs are all JSON arrays.
macro_rules! array_impl {
    ($($tr:ident::$m:ident),*) => {$(
        impl ser::$tr for Array<'_> {
            type Ok = ();
            type Error = CanonError;
            fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
                self.element(v)
            }
            fn end(self) -> Result<(), CanonError> {
                Array::end(self);
                Ok(())
            }
        }
    )*};
}

array_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), CanonError> {
        self.key(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
        self.value(v)
    }
    fn end(self) -> Result<(), CanonError> {
        Object::end(self).map(drop)
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        self.field(name, v)
    }
    fn end(self) -> Result<(), CanonError> {
        Object::end(self).map(drop)
    }
}

/// `{"Variant": …}`: a one-entry object around an array or object (one
/// key: nothing to sort).
pub(crate) struct Variant<I> {
    inner: I,
}

impl<'a, I> Variant<I> {
    fn open(
        c: &'a mut Canon,
        variant: &str,
        inner: impl FnOnce(&'a mut Canon) -> I,
    ) -> Result<Variant<I>, CanonError> {
        c.out.push(b'{');
        let ks = c.out.len();
        c.string(variant);
        let ke = c.out.len();
        c.out.push(b':');
        c.path.push(Seg::Key(ks, ke));
        Ok(Variant { inner: inner(c) })
    }
}

fn close_variant(c: &mut Canon) {
    c.path.pop();
    c.out.push(b'}');
}

impl ser::SerializeTupleVariant for Variant<Array<'_>> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
        self.inner.element(v)
    }
    fn end(self) -> Result<(), CanonError> {
        close_variant(self.inner.end());
        Ok(())
    }
}

impl ser::SerializeStructVariant for Variant<Object<'_>> {
    type Ok = ();
    type Error = CanonError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        self.inner.field(name, v)
    }
    fn end(self) -> Result<(), CanonError> {
        close_variant(self.inner.end()?);
        Ok(())
    }
}

/// Serialises a map key: strings (and chars) as JSON strings, integers and
/// booleans quoted, as serde_json does; anything else is refused.
struct KeySer<'a>(&'a mut Canon);

macro_rules! int_keys {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), CanonError> {
            self.0.out.push(b'"');
            self.0.integer(v);
            self.0.out.push(b'"');
            Ok(())
        }
    )*};
}

macro_rules! refuse_keys {
    ($($f:ident($($a:ty),*) -> $r:ty),* $(,)?) => {$(
        #[allow(unused_variables)]
        fn $f(self, $(_: $a),*) -> Result<$r, CanonError> {
            Err(self.0.fail("object keys must be strings, integers or booleans"))
        }
    )*};
}

impl ser::Serializer for KeySer<'_> {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = ser::Impossible<(), CanonError>;
    type SerializeTuple = ser::Impossible<(), CanonError>;
    type SerializeTupleStruct = ser::Impossible<(), CanonError>;
    type SerializeTupleVariant = ser::Impossible<(), CanonError>;
    type SerializeMap = ser::Impossible<(), CanonError>;
    type SerializeStruct = ser::Impossible<(), CanonError>;
    type SerializeStructVariant = ser::Impossible<(), CanonError>;

    int_keys!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);

    fn serialize_str(self, v: &str) -> Result<(), CanonError> {
        self.0.string(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonError> {
        self.0.string(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonError> {
        self.0.string(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        v.serialize(self)
    }

    fn serialize_bool(self, v: bool) -> Result<(), CanonError> {
        self.0.string(if v { "true" } else { "false" });
        Ok(())
    }

    refuse_keys!(
        serialize_f32(f32) -> (),
        serialize_f64(f64) -> (),
        serialize_bytes(&[u8]) -> (),
        serialize_none() -> (),
        serialize_unit() -> (),
        serialize_unit_struct(&'static str) -> (),
        serialize_seq(Option<usize>) -> Self::SerializeSeq,
        serialize_tuple(usize) -> Self::SerializeTuple,
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct,
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant,
        serialize_map(Option<usize>) -> Self::SerializeMap,
        serialize_struct(&'static str, usize) -> Self::SerializeStruct,
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant,
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), CanonError> {
        Err(self
            .0
            .fail("object keys must be strings, integers or booleans"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), CanonError> {
        Err(self
            .0
            .fail("object keys must be strings, integers or booleans"))
    }
}
