//! The SCIM schemas this server implements (RFC 7643 §4, §8.7), as data: the `/Schemas`
//! documents are rendered from it, and filters, PATCH and validation consult it — so what is
//! advertised and what works cannot drift apart.

use serde_json::{Value, json};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
    DateTime,
    /// Base64 text (`x509Certificates.value`), compared and stored as a string.
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Default,
}

#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique: bool,
    pub sub: &'static [Attr],
    pub canonical: &'static [&'static str],
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        sub: &[],
        canonical: &[],
        description,
    }
}

const fn exact(a: Attr) -> Attr {
    Attr {
        case_exact: true,
        ..a
    }
}

const fn read_only(a: Attr) -> Attr {
    Attr {
        mutability: Mutability::ReadOnly,
        ..a
    }
}

const fn kind(a: Attr, kind: Kind) -> Attr {
    Attr { kind, ..a }
}

const fn complex(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    Attr {
        kind: Kind::Complex,
        sub,
        ..s(name, description)
    }
}

const fn multi(a: Attr) -> Attr {
    Attr { multi: true, ..a }
}

const fn typed(a: Attr, canonical: &'static [&'static str]) -> Attr {
    Attr { canonical, ..a }
}

const PRIMARY: Attr = kind(
    s("primary", "Whether this is the preferred value."),
    Kind::Boolean,
);

const NAME: &[Attr] = &[
    s("formatted", "The full name, formatted for display."),
    s("familyName", "The family name."),
    s("givenName", "The given name."),
    s("middleName", "The middle name(s)."),
    s("honorificPrefix", "e.g. Ms."),
    s("honorificSuffix", "e.g. III"),
];

const EMAIL: &[Attr] = &[
    s("value", "The email address."),
    s("display", "A label for display."),
    typed(
        s("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    PRIMARY,
];

const PHONE: &[Attr] = &[
    s("value", "The phone number."),
    s("display", "A label for display."),
    typed(
        s("type", "work, home, mobile, fax, pager or other."),
        &["work", "home", "mobile", "fax", "pager", "other"],
    ),
    PRIMARY,
];

const ADDRESS: &[Attr] = &[
    s(
        "formatted",
        "The full mailing address, formatted for display.",
    ),
    s("streetAddress", "The street address."),
    s("locality", "The city or locality."),
    s("region", "The state or region."),
    s("postalCode", "The zip or postal code."),
    s("country", "The country (ISO 3166-1 alpha-2)."),
    typed(
        s("type", "work, home or other."),
        &["work", "home", "other"],
    ),
    PRIMARY,
];

const IM: &[Attr] = &[
    s("value", "The instant messaging address."),
    s("display", "A label for display."),
    typed(
        s(
            "type",
            "aim, gtalk, icq, xmpp, msn, skype, qq, yahoo or other.",
        ),
        &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"],
    ),
    PRIMARY,
];

const PHOTO: &[Attr] = &[
    exact(kind(s("value", "The URL of the image."), Kind::Reference)),
    s("display", "A label for display."),
    typed(s("type", "photo or thumbnail."), &["photo", "thumbnail"]),
    PRIMARY,
];

/// `entitlements` and `roles`: free-form values the IdP assigns (kept, not interpreted —
/// roles in Portcullis come from groups, see docs/scim.md).
const LABELLED: &[Attr] = &[
    s("value", "The value."),
    s("display", "A label for display."),
    s("type", "A label for the value's function."),
    PRIMARY,
];

const CERTIFICATE: &[Attr] = &[
    kind(
        s("value", "A DER certificate, base64-encoded."),
        Kind::Binary,
    ),
    s("display", "A label for display."),
    s("type", "A label for the certificate's function."),
    PRIMARY,
];

const GROUP_REF: &[Attr] = &[
    read_only(exact(s("value", "The id of the group."))),
    read_only(exact(kind(
        s("$ref", "The URI of the group."),
        Kind::Reference,
    ))),
    read_only(s("display", "The group's displayName.")),
    read_only(typed(s("type", "direct."), &["direct", "indirect"])),
];

const META: &[Attr] = &[
    read_only(exact(s("resourceType", "User or Group."))),
    read_only(kind(
        s("created", "When the resource was created."),
        Kind::DateTime,
    )),
    read_only(kind(
        s("lastModified", "When the resource was last changed."),
        Kind::DateTime,
    )),
    read_only(exact(kind(
        s("location", "The resource's URI."),
        Kind::Reference,
    ))),
    read_only(exact(s("version", "The resource's version (its ETag)."))),
];

const ID: Attr = Attr {
    returned: Returned::Always,
    ..read_only(exact(s("id", "Assigned by the service provider.")))
};
const EXTERNAL_ID: Attr = exact(s("externalId", "The identifier the client assigned."));
const META_ATTR: Attr = read_only(complex("meta", META, "Resource metadata."));

pub const USER_ATTRS: &[Attr] = &[
    ID,
    EXTERNAL_ID,
    META_ATTR,
    Attr {
        required: true,
        unique: true,
        returned: Returned::Always,
        ..s(
            "userName",
            "Unique identifier for the user, case-insensitively.",
        )
    },
    complex("name", NAME, "The components of the user's name."),
    s("displayName", "The name to display."),
    s("nickName", "A casual name."),
    kind(s("profileUrl", "A profile page."), Kind::Reference),
    s("title", "The user's title."),
    s("userType", "e.g. Employee, Contractor."),
    s("preferredLanguage", "e.g. en-US."),
    s("locale", "e.g. en-US."),
    s("timezone", "e.g. Europe/Paris."),
    kind(
        s(
            "active",
            "false: the user's keys and sessions are refused at once.",
        ),
        Kind::Boolean,
    ),
    multi(complex("emails", EMAIL, "Email addresses.")),
    multi(complex("phoneNumbers", PHONE, "Phone numbers.")),
    multi(complex("ims", IM, "Instant messaging addresses.")),
    multi(complex("photos", PHOTO, "URLs of photos of the user.")),
    multi(complex("addresses", ADDRESS, "Physical mailing addresses.")),
    multi(complex(
        "entitlements",
        LABELLED,
        "Entitlements the IdP assigns (kept as sent).",
    )),
    multi(complex(
        "roles",
        LABELLED,
        "Roles the IdP assigns (kept as sent; Portcullis roles come from groups).",
    )),
    multi(complex(
        "x509Certificates",
        CERTIFICATE,
        "Certificates issued to the user.",
    )),
    read_only(multi(complex(
        "groups",
        GROUP_REF,
        "The groups (teams) the user is in; change them through Group.members.",
    ))),
];

const MANAGER: &[Attr] = &[
    exact(s("value", "The id of the manager's User.")),
    read_only(exact(kind(
        s("$ref", "The URI of the manager."),
        Kind::Reference,
    ))),
    read_only(s("displayName", "The manager's displayName.")),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "The employee number."),
    s("costCenter", "The cost center."),
    s("organization", "The organization."),
    s("division", "The division."),
    s("department", "The department."),
    complex("manager", MANAGER, "The user's manager."),
];

const MEMBER: &[Attr] = &[
    Attr {
        mutability: Mutability::Immutable,
        ..exact(s("value", "The id of the member User."))
    },
    read_only(exact(kind(
        s("$ref", "The URI of the member."),
        Kind::Reference,
    ))),
    read_only(s("display", "The member's displayName.")),
    Attr {
        mutability: Mutability::Immutable,
        ..typed(s("type", "User (groups cannot be members)."), &["User"])
    },
];

pub const GROUP_ATTRS: &[Attr] = &[
    ID,
    EXTERNAL_ID,
    META_ATTR,
    Attr {
        required: true,
        returned: Returned::Always,
        ..s("displayName", "The group's name (the team's alias).")
    },
    multi(complex("members", MEMBER, "The users in the group.")),
];

/// The attributes of a schema URN.
pub fn attrs_of(schema: &str) -> Option<&'static [Attr]> {
    if schema.eq_ignore_ascii_case(USER) {
        Some(USER_ATTRS)
    } else if schema.eq_ignore_ascii_case(ENTERPRISE) {
        Some(ENTERPRISE_ATTRS)
    } else if schema.eq_ignore_ascii_case(GROUP) {
        Some(GROUP_ATTRS)
    } else {
        None
    }
}

/// Finds an attribute (case-insensitively) in a list.
pub fn find<'a>(list: &'a [Attr], name: &str) -> Option<&'a Attr> {
    list.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn render(a: &Attr) -> Value {
    let kind = match a.kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference => "reference",
        Kind::DateTime => "dateTime",
        Kind::Binary => "binary",
    };
    let mut out = json!({
        "name": a.name,
        "type": kind,
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "mutability": match a.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
        },
        "returned": match a.returned {
            Returned::Always => "always",
            Returned::Default => "default",
        },
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if let Some(m) = out.as_object_mut() {
        if matches!(a.kind, Kind::String | Kind::Reference) {
            m.insert("caseExact".into(), json!(a.case_exact));
        }
        if !a.canonical.is_empty() {
            m.insert("canonicalValues".into(), json!(a.canonical));
        }
        if a.kind == Kind::Reference {
            let types = if a.name == "$ref" {
                json!(["User", "Group"])
            } else {
                json!(["external"])
            };
            m.insert("referenceTypes".into(), types);
        }
        if !a.sub.is_empty() {
            m.insert(
                "subAttributes".into(),
                Value::Array(a.sub.iter().map(render).collect()),
            );
        }
    }
    out
}

/// The `/Schemas/{id}` document of one schema. `id`, `externalId` and `meta` are common
/// attributes (RFC 7643 §3.1), not part of any schema's definition.
pub fn document(id: &str, base: &str) -> Option<Value> {
    let (name, description, attrs) = if id.eq_ignore_ascii_case(USER) {
        ("User", "User Account", USER_ATTRS)
    } else if id.eq_ignore_ascii_case(GROUP) {
        ("Group", "Group (a team)", GROUP_ATTRS)
    } else if id.eq_ignore_ascii_case(ENTERPRISE) {
        ("EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS)
    } else {
        return None;
    };
    let id = [USER, GROUP, ENTERPRISE]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(id))
        .unwrap_or(id);
    let attributes: Vec<Value> = attrs
        .iter()
        .filter(|a| !matches!(a.name, "id" | "externalId" | "meta"))
        .map(render)
        .collect();
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    }))
}

pub fn all_documents(base: &str) -> Vec<Value> {
    [USER, GROUP, ENTERPRISE]
        .into_iter()
        .filter_map(|id| document(id, base))
        .collect()
}

/// Resolves (schema URN as written, attribute, sub-attribute) against a resource type's core
/// attributes and its extension, case-insensitively. `None` when any part is unknown.
fn resolve<'a>(
    core_urn: &str,
    core: &'a [Attr],
    ext: Option<(&str, &'a [Attr])>,
    schema: Option<&str>,
    attr: &str,
    sub: Option<&str>,
) -> Option<(&'a Attr, Option<&'a Attr>)> {
    let list = match schema {
        None => core,
        Some(s) if s.eq_ignore_ascii_case(core_urn) => core,
        Some(s) => match ext {
            Some((urn, attrs)) if s.eq_ignore_ascii_case(urn) => attrs,
            _ => return None,
        },
    };
    let a = find(list, attr)?;
    match sub {
        None => Some((a, None)),
        Some(s) => find(a.sub, s).map(|x| (a, Some(x))),
    }
}

/// `schemas` is common to every resource: a multi-valued, case-exact list of URNs.
fn is_schemas(_schema: Option<&str>, attr: &str) -> bool {
    // Also inside an extension's object, where some clients repeat it; it is dropped there.
    attr.eq_ignore_ascii_case("schemas")
}

macro_rules! resource_schema {
    ($name:ident, $core_urn:expr, $core:expr, $ext:expr) => {
        /// Attribute rules of one resource type, for filters and PATCH.
        pub struct $name;

        impl $name {
            fn get(
                schema: Option<&str>,
                attr: &str,
                sub: Option<&str>,
            ) -> Option<(&'static Attr, Option<&'static Attr>)> {
                resolve($core_urn, $core, $ext, schema, attr, sub)
            }
        }

        impl super::filter::Attributes for $name {
            fn case_exact(
                &self,
                schema: Option<&str>,
                attr: &str,
                sub: Option<&str>,
            ) -> Option<bool> {
                if is_schemas(schema, attr) {
                    return sub.is_none().then_some(true);
                }
                let (a, s) = Self::get(schema, attr, sub)?;
                Some(s.unwrap_or(a).case_exact)
            }
        }

        impl super::patch::Schema for $name {
            fn multi_valued(&self, schema: Option<&str>, attr: &str) -> bool {
                is_schemas(schema, attr)
                    || Self::get(schema, attr, None).is_some_and(|(a, _)| a.multi)
            }

            fn read_only(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
                Self::get(schema, attr, sub).is_some_and(|(a, s)| {
                    a.mutability == Mutability::ReadOnly
                        || s.is_some_and(|s| s.mutability == Mutability::ReadOnly)
                })
            }

            fn canonical(
                &self,
                schema: Option<&str>,
                attr: &str,
                sub: Option<&str>,
            ) -> Option<String> {
                if is_schemas(schema, attr) {
                    return sub.is_none().then(|| "schemas".to_string());
                }
                let (a, s) = Self::get(schema, attr, sub)?;
                Some(s.unwrap_or(a).name.to_string())
            }

            fn boolean(&self, schema: Option<&str>, attr: &str, sub: Option<&str>) -> bool {
                Self::get(schema, attr, sub)
                    .is_some_and(|(a, s)| s.unwrap_or(a).kind == Kind::Boolean)
            }
        }
    };
}

resource_schema!(
    UserAttributes,
    USER,
    USER_ATTRS,
    Some((ENTERPRISE, ENTERPRISE_ATTRS))
);
resource_schema!(GroupAttributes, GROUP, GROUP_ATTRS, None);
