// Passkeys on the hosted pages, for forms marked data-passkey="get" (sign in) or
// "create" (register). Such a form runs the WebAuthn ceremony before it is sent: its
// interaction, csrf_token and password fields are posted to the form's data-start URL,
// which answers {ceremony_id, options} (the password is then cleared: it is checked
// once, at the start); the browser's answer fills the form's ceremony and credential
// fields, and the form is sent as any other. A refused start shows the server's words. The forms stay hidden where
// there is no script or no WebAuthn, so nothing is offered that cannot work.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) {
      text += String.fromCharCode(bytes[i]);
    }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(value) {
    const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    const text = atob(base64 + "===".slice((base64.length + 3) % 4));
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      bytes[i] = text.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: fromBase64url(c.id) });
    });
  }

  function creationOptions(o) {
    return Object.assign({}, o, {
      challenge: fromBase64url(o.challenge),
      user: Object.assign({}, o.user, { id: fromBase64url(o.user.id) }),
      excludeCredentials: withIds(o.excludeCredentials),
    });
  }

  function requestOptions(o) {
    return Object.assign({}, o, {
      challenge: fromBase64url(o.challenge),
      allowCredentials: withIds(o.allowCredentials),
    });
  }

  // PublicKeyCredential.toJSON() where the browser has it, else the same by hand.
  function answerJSON(credential) {
    if (typeof credential.toJSON === "function") {
      return credential.toJSON();
    }
    const r = credential.response;
    const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
  }

  // A start the server refused, with its reason when it gave one.
  function Refused(description) {
    this.description = typeof description === "string" ? description : null;
  }

  async function begin(form) {
    const body = new URLSearchParams();
    ["interaction", "csrf_token", "password"].forEach(function (name) {
      const field = form.elements[name];
      if (field) {
        body.set(name, field.value);
      }
    });
    const started = await fetch(form.dataset.start, { method: "POST", body: body, credentials: "same-origin" });
    if (!started.ok) {
      const refusal = await started.json().catch(function () { return {}; });
      throw new Refused(refusal.error_description);
    }
    if (form.elements.password) {
      form.elements.password.value = "";
    }
    return started.json();
  }

  async function run(form, mediation, signal) {
    const started = await begin(form);
    const options = started.options.publicKey;
    const credential = form.dataset.passkey === "create"
      ? await navigator.credentials.create({ publicKey: creationOptions(options) })
      : await navigator.credentials.get({ publicKey: requestOptions(options), mediation: mediation, signal: signal });
    if (!credential) {
      throw new Error("no passkey was chosen");
    }
    form.elements.ceremony.value = started.ceremony_id;
    form.elements.credential.value = JSON.stringify(answerJSON(credential));
    form.submit();
  }

  function failed(form, error) {
    const message = form.querySelector("[data-passkey-error]");
    if (message) {
      if (!message.dataset.generic) {
        message.dataset.generic = message.textContent;
      }
      message.textContent = (error instanceof Refused && error.description) || message.dataset.generic;
      message.hidden = false;
    }
  }

  let autofill = null;
  document.querySelectorAll("form[data-passkey]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (autofill) {
        autofill.abort();
        autofill = null;
      }
      run(form).catch(function (error) {
        failed(form, error);
      });
    });
  });

  // Conditional UI: the passkeys of this site offered in the username field's autofill.
  const offered = document.querySelector("form[data-passkey-autofill]");
  if (offered && typeof PublicKeyCredential.isConditionalMediationAvailable === "function") {
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) {
        return;
      }
      autofill = new AbortController();
      run(offered, "conditional", autofill.signal).catch(function () {});
    });
  }
})();
