// Shows allauth's WebAuthn failures (key refused, dialog cancelled, no key) to the user
// instead of only in the console. The message comes from a data attribute so it is translated.
(function () {
  'use strict'
  document.addEventListener('allauth.error', function (event) {
    const box = document.getElementById('webauthn-error')
    if (!box) {
      return
    }
    event.preventDefault()
    box.textContent = box.dataset.message || 'The security key could not be used.'
    box.hidden = false
    box.focus()
  })
})()
